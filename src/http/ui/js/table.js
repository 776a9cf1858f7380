// Tables. pagedTable asks the server for one page at a time (page,
// page_size, name, use_regex, sort, sort_reverse, pagination=true, columns),
// so a broker with 10,000 queues costs the browser one page. dataTable
// shows a short list the view already holds (users, bindings, policies).

import { h, icon, fmtNum, get, debounce } from './dom.js';
import { errorBox } from './ui.js';

const PAGE_SIZES = [20, 50, 100, 500];

/**
 * columns: [{ key, label, sort (sort key or false), render(item), num, cls, title }]; falsy
 * entries are left out (a column shown only sometimes).
 * source(params, signal): a promise of RabbitMQ's paginated answer.
 * query / onQuery: the list state, kept in the address so reload and back work.
 */
export function pagedTable({ columns: maybeColumns, source, query, onQuery, rowLink, empty = 'Nothing here yet.', label, toolbarExtra = [] }) {
  const columns = maybeColumns.filter(Boolean);
  const state = {
    page: Math.max(1, Number(query.get('page')) || 1),
    page_size: PAGE_SIZES.includes(Number(query.get('page_size'))) ? Number(query.get('page_size')) : 50,
    name: query.get('name') || '',
    use_regex: query.get('use_regex') === 'true',
    sort: query.get('sort') || '',
    sort_reverse: query.get('sort_reverse') === 'true',
  };
  let controller = null;
  let last = null;
  let gone = false;
  const home = location.hash.split('?')[0]; // the list's own address, without its query

  const filter = h('input', {
    type: 'search', class: 'filter', placeholder: 'Filter by name', value: state.name,
    'aria-label': `Filter ${label || 'list'} by name`, dataset: { filter: '1' }, spellcheck: 'false', autocomplete: 'off',
  });
  const regex = h('input', { type: 'checkbox', checked: state.use_regex });
  const count = h('span', { class: 'count' });
  const pageInput = h('input', { type: 'number', min: '1', class: 'page-input', value: state.page, 'aria-label': 'Page number' });
  const pageCount = h('span', { class: 'muted' });
  const nav = (name, title, target, attrs = {}) => h('button', {
    type: 'button', class: 'icon-button', title, 'aria-label': title, onclick: () => go(target()), ...attrs,
  }, icon(name));
  const firstB = nav('first', 'First page', () => 1);
  const prevB = nav('prev', 'Previous page ([)', () => state.page - 1, { dataset: { pagePrev: '1' } });
  const nextB = nav('next', 'Next page (])', () => state.page + 1, { dataset: { pageNext: '1' } });
  const lastB = nav('last', 'Last page', () => (last ? last.page_count : 1));
  const sizeSelect = h('select', { 'aria-label': 'Rows per page', onchange: () => { state.page_size = Number(sizeSelect.value); state.page = 1; load(); } },
    PAGE_SIZES.map((n) => h('option', { value: n, selected: n === state.page_size }, `${n} / page`)));

  const head = h('tr', {}, columns.map((c) => {
    const th = h('th', { class: cellClass(c), scope: 'col', title: c.title });
    if (c.sort === false) th.append(c.label);
    else {
      const key = c.sort || c.key;
      th.setAttribute('aria-sort', 'none');
      th.append(h('button', {
        type: 'button', class: 'sort', onclick: () => {
          if (state.sort === key) state.sort_reverse = !state.sort_reverse;
          else { state.sort = key; state.sort_reverse = Boolean(c.num); }
          state.page = 1;
          load();
        },
      }, c.label, h('span', { class: 'sort-mark', 'aria-hidden': 'true' })));
      th.dataset.sortKey = key;
    }
    return th;
  }));
  const body = h('tbody', {});
  const errorSlot = h('div', {});
  const wrap = h('div', { class: 'table-wrap' }, h('div', { class: 'loading-bar' }),
    h('table', { class: 'data' }, h('thead', {}, head), body));

  const node = h('div', { class: 'paged' },
    h('div', { class: 'toolbar' },
      h('div', { class: 'search' }, icon('search'), filter),
      h('label', { class: 'check', title: 'Treat the filter as a regular expression' }, regex, h('span', {}, 'Regex')),
      toolbarExtra,
      h('span', { class: 'spacer' }),
      count),
    errorSlot,
    wrap,
    h('div', { class: 'pager' },
      sizeSelect,
      h('span', { class: 'spacer' }),
      firstB, prevB,
      h('label', { class: 'page-of' }, 'Page ', pageInput, ' of ', pageCount),
      nextB, lastB));

  const refilter = debounce(() => { if (gone) return; state.name = filter.value; state.page = 1; load(); }, 300);
  filter.addEventListener('input', refilter);
  filter.addEventListener('keydown', (e) => { if (e.key === 'Escape' && filter.value) { e.stopPropagation(); filter.value = ''; refilter(); } });
  regex.addEventListener('change', () => { state.use_regex = regex.checked; state.page = 1; load(); });
  pageInput.addEventListener('change', () => go(Number(pageInput.value)));

  function go(page) {
    const max = last ? Math.max(1, last.page_count) : 1;
    const p = Math.min(Math.max(1, Math.floor(page) || 1), max);
    if (p !== state.page) { state.page = p; load(); } else pageInput.value = p;
  }

  function params() {
    return {
      page: state.page, page_size: state.page_size, name: state.name,
      use_regex: state.name ? state.use_regex : '', sort: state.sort,
      sort_reverse: state.sort ? state.sort_reverse : '', pagination: 'true',
    };
  }

  async function load({ quiet = false } = {}) {
    if (controller) controller.abort();
    controller = new AbortController();
    const mine = controller;
    if (location.hash.split('?')[0] === home) onQuery({
      page: state.page > 1 ? state.page : '', page_size: state.page_size !== 50 ? state.page_size : '',
      name: state.name, use_regex: state.use_regex ? 'true' : '', sort: state.sort, sort_reverse: state.sort_reverse ? 'true' : '',
    });
    const slow = quiet ? null : setTimeout(() => wrap.classList.add('loading'), 200);
    try {
      let answer = await source(params(), mine.signal);
      if (Array.isArray(answer)) answer = pageLocally(answer, state);
      if (answer.page_count > 0 && state.page > answer.page_count) { state.page = answer.page_count; return load({ quiet }); }
      last = answer;
      errorSlot.replaceChildren();
      render(answer);
    } catch (err) {
      if (err.name === 'AbortError' || gone) return;
      // RabbitMQ answers 400 "page out of range" when a list shrank under us.
      if (err.status === 400 && state.page > 1 && /page/i.test(err.message)) { state.page = 1; load({ quiet }); return; }
      errorSlot.replaceChildren(errorBox(err));
    } finally {
      clearTimeout(slow);
      if (controller === mine) { wrap.classList.remove('loading'); controller = null; }
    }
  }

  function render(answer) {
    for (const th of head.children) {
      if (!th.dataset.sortKey) continue;
      const on = th.dataset.sortKey === state.sort;
      th.setAttribute('aria-sort', on ? (state.sort_reverse ? 'descending' : 'ascending') : 'none');
    }
    const items = answer.items || [];
    body.replaceChildren(...(items.length ? items.map((item) => row(item)) : [
      h('tr', { class: 'empty' }, h('td', { colspan: columns.length }, state.name ? `Nothing matches “${state.name}”.` : empty))]));
    const from = items.length ? (answer.page - 1) * answer.page_size + 1 : 0;
    const to = from ? from + items.length - 1 : 0;
    count.replaceChildren(
      h('strong', {}, `${fmtNum(from)}–${fmtNum(to)}`), ' of ', h('strong', {}, fmtNum(answer.filtered_count)),
      answer.total_count !== answer.filtered_count ? h('span', { class: 'muted' }, ` (filtered from ${fmtNum(answer.total_count)})`) : '');
    const pages = Math.max(1, answer.page_count || 1);
    pageInput.value = state.page;
    pageInput.max = pages;
    pageCount.textContent = fmtNum(pages);
    firstB.disabled = prevB.disabled = state.page <= 1;
    nextB.disabled = lastB.disabled = state.page >= pages;
  }

  function row(item) {
    const tr = h('tr', {}, columns.map((c) => h('td', { class: cellClass(c) }, c.render ? c.render(item) : fmtCell(get(item, c.key), c))));
    if (rowLink) {
      const href = rowLink(item);
      tr.classList.add('linked');
      tr.addEventListener('click', (e) => {
        if (e.target.closest('a, button, input, select, label') || getSelection().toString()) return;
        location.hash = href;
      });
    }
    return tr;
  }

  load();
  return {
    node,
    refresh: () => (controller || gone ? Promise.resolve() : load({ quiet: true })),
    destroy() { gone = true; if (controller) controller.abort(); },
  };
}

/**
 * An endpoint that answers a plain list (no pagination support) is paged,
 * filtered and sorted here with RabbitMQ's rules, so the table looks the same.
 */
function pageLocally(all, st) {
  let list = all;
  if (st.name) {
    let re;
    try { re = st.use_regex ? new RegExp(st.name, 'i') : null; } catch { re = null; }
    const needle = st.name.toLowerCase();
    list = list.filter((it) => (re ? re.test(it.name || '') : String(it.name || '').toLowerCase().includes(needle)));
  }
  if (st.sort) {
    list = list.slice().sort((a, b) => cmp(get(a, st.sort), get(b, st.sort)) * (st.sort_reverse ? -1 : 1));
  }
  const pageCount = Math.ceil(list.length / st.page_size);
  const page = Math.min(st.page, Math.max(1, pageCount));
  const items = list.slice((page - 1) * st.page_size, page * st.page_size);
  return { items, filtered_count: list.length, total_count: all.length, page, page_size: st.page_size, page_count: pageCount, item_count: items.length };
}

/** num: right-aligned figures; cls: extra classes (nowrap, main-col). */
function cellClass(c) {
  return [c.num ? 'num' : '', c.cls || ''].join(' ').trim() || null;
}

function fmtCell(v, c) {
  if (c.num) return fmtNum(v);
  return v === undefined || v === null || v === '' ? '–' : String(v);
}

/**
 * A short list held in memory, sorted in the browser by a clicked header.
 * columns as above, with `value(item)` for sorting when render() returns a node.
 */
export function dataTable({ columns: maybeColumns, rows, empty = 'None.', rowLink }) {
  const columns = maybeColumns.filter(Boolean);
  let sortCol = null;
  let reverse = false;
  const body = h('tbody', {});
  const head = h('tr', {}, columns.map((c, i) => {
    const th = h('th', { class: cellClass(c), scope: 'col', title: c.title });
    if (c.sort === false) th.append(c.label);
    else {
      th.setAttribute('aria-sort', 'none');
      th.append(h('button', { type: 'button', class: 'sort', onclick: () => { if (sortCol === i) reverse = !reverse; else { sortCol = i; reverse = Boolean(c.num); } draw(); } },
        c.label, h('span', { class: 'sort-mark', 'aria-hidden': 'true' })));
    }
    return th;
  }));
  function draw() {
    let list = rows.slice();
    if (sortCol !== null) {
      const c = columns[sortCol];
      const key = (it) => (c.value ? c.value(it) : get(it, c.key));
      list.sort((a, b) => cmp(key(a), key(b)) * (reverse ? -1 : 1));
      [...head.children].forEach((th, i) => { if (th.hasAttribute('aria-sort')) th.setAttribute('aria-sort', i === sortCol ? (reverse ? 'descending' : 'ascending') : 'none'); });
    }
    body.replaceChildren(...(list.length ? list.map((item) => {
      const tr = h('tr', {}, columns.map((c) => h('td', { class: cellClass(c) }, c.render ? c.render(item) : fmtCell(get(item, c.key), c))));
      if (rowLink) {
        tr.classList.add('linked');
        tr.addEventListener('click', (e) => { if (!e.target.closest('a, button, input, select, label')) location.hash = rowLink(item); });
      }
      return tr;
    }) : [h('tr', { class: 'empty' }, h('td', { colspan: columns.length }, empty))]));
  }
  draw();
  return h('div', { class: 'table-wrap' }, h('table', { class: 'data' }, h('thead', {}, head), body));
}

function cmp(a, b) {
  if (a === b) return 0;
  if (a === undefined || a === null) return -1;
  if (b === undefined || b === null) return 1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}
