// Session search: server filters (service, state, dates) plus, for what the API cannot filter yet,
// client-side filters on this page of results (agent id, verdict, face-check outcome).
import { api } from '../shared/api.js';
import { clear, h } from '../shared/dom.js';
import { formatDateTime, localName, onLangChange, t, tx } from '../shared/i18n.js';

const PAGE = 50;

/** The latest verdict and face-check outcome of a session (two reads, cached). */
async function detailsOf(id, token, cache) {
  if (cache.has(id)) return cache.get(id);
  const [reviews, timeline] = await Promise.all([
    api(`/api/v1/sessions/${id}/reviews`, { token }).catch(() => []),
    api(`/api/v1/sessions/${id}/timeline`, { token }).catch(() => []),
  ]);
  const last = reviews[reviews.length - 1];
  const results = timeline.filter((e) => e.kind === 'facecheck.result');
  const fc = results[results.length - 1];
  const details = {
    verdict: last ? last.verdict : 'none',
    facecheck: !fc ? 'not_run' : (fc.data.match && fc.data.liveness && fc.data.liveness.passed ? 'passed' : 'failed'),
  };
  cache.set(id, details);
  return details;
}

async function mapLimited(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) { const i = next++; out[i] = await fn(items[i]); }
  }));
  return out;
}

function epochOfDate(value, plusDays = 0) {
  if (!value) return null;
  const d = new Date(value + 'T00:00:00');
  d.setDate(d.getDate() + plusDays);
  return d.getTime() / 1000;
}

export function initSearch({ form, results, summary, more, token, services, onOpen }) {
  const cache = new Map();
  const st = { items: [], total: 0, offset: 0, shown: [] };
  const serviceSelect = form.querySelector('#f-service');
  const svcName = (code) => (services.get(code) ? localName(services.get(code)) : code);

  function fillServices() {
    const chosen = serviceSelect.value;
    for (const o of [...serviceSelect.options].slice(1)) o.remove();
    for (const s of services.values()) serviceSelect.append(h('option', { value: s.code, text: localName(s) }));
    serviceSelect.value = chosen;
  }

  function row(s) {
    const d = cache.get(s.session_id);
    const badges = [];
    if (s.evidence_incomplete) {
      badges.push(h('span', { class: 'pill ' + (s.evidence_acknowledged ? 'pill-warn' : 'pill-bad'), testid: 'evidence-badge',
        text: t(s.evidence_acknowledged ? 'rv.evidence.badge_ack' : 'rv.evidence.badge') }));
    }
    if (d && d.verdict !== 'none') badges.push(h('span', { class: `pill verdict-${d.verdict}`, text: t('rv.verdict.' + d.verdict) }));
    if (d && d.facecheck !== 'not_run') {
      badges.push(h('span', { class: 'pill ' + (d.facecheck === 'passed' ? 'pill-ok' : 'pill-bad'),
        text: `${t('rv.facecheck')}: ${t('rv.fc.' + d.facecheck)}` }));
    }
    return h('li', {}, h('button', {
      type: 'button', class: 'session-row', testid: 'session-row', dataset: { sessionId: s.session_id, state: s.state },
      on: { click: () => onOpen(s.session_id) },
    },
    h('span', { class: 'row-main' },
      h('strong', { text: s.customer?.name || '—' }), ' ',
      h('span', { class: 'muted small', text: s.customer?.ref || '' })),
    h('span', { class: 'row-meta small' },
      h('span', { text: svcName(s.service) }), ' · ',
      h('span', { text: formatDateTime(s.created_at) }), ' · ',
      h('span', { text: s.agent_id ? t('rv.agent_id', { id: s.agent_id }) : t('rv.no_agent') })),
    h('span', { class: 'row-badges' }, h('span', { class: `pill state-${s.state}`, text: t('state.' + s.state) }), badges)));
  }

  async function filtered(items) {
    const f = new FormData(form);
    const agent = String(f.get('agent') || '').trim();
    const verdict = f.get('verdict');
    const facecheck = f.get('facecheck');
    let out = agent ? items.filter((s) => String(s.agent_id ?? '') === agent) : items;
    if (verdict || facecheck) {
      tx(summary, 'rv.loading_details');
      const details = await mapLimited(out, 4, (s) => detailsOf(s.session_id, token, cache));
      out = out.filter((s, i) => (!verdict || details[i].verdict === verdict) && (!facecheck || details[i].facecheck === facecheck));
    }
    return out;
  }

  function render() {
    clear(results);
    for (const s of st.shown) results.append(row(s));
    const f = new FormData(form);
    const clientSide = f.get('agent') || f.get('verdict') || f.get('facecheck');
    tx(summary, 'rv.results', { total: st.total, shown: st.shown.length });
    if (clientSide) summary.textContent += t('rv.results_filtered');
    if (!st.shown.length) results.append(h('li', { class: 'muted', i18n: 'rv.none' }));
    more.hidden = st.offset + PAGE >= st.total;
  }

  async function load(append) {
    const f = new FormData(form);
    const params = new URLSearchParams({ limit: String(PAGE), offset: String(append ? st.offset + PAGE : 0) });
    if (f.get('service')) params.set('service', f.get('service'));
    if (f.get('state')) params.set('state', f.get('state'));
    const since = epochOfDate(f.get('since'));
    const until = epochOfDate(f.get('until'), 1);
    if (since != null) params.set('since', String(since));
    if (until != null) params.set('until', String(until));
    const page = await api('/api/v1/sessions?' + params, { token });
    st.offset = Number(params.get('offset'));
    st.total = page.total;
    st.items = append ? [...st.items, ...page.items] : page.items;
    st.shown = await filtered(st.items);
    render();
  }

  form.addEventListener('submit', (ev) => { ev.preventDefault(); load(false).catch((e) => { summary.textContent = e.message; }); });
  more.addEventListener('click', () => load(true).catch((e) => { summary.textContent = e.message; }));
  onLangChange(() => { fillServices(); render(); });
  fillServices();
  return {
    refresh: () => load(false),
    /** A session's verdict changed: forget its cached details. */
    forget: (id) => { cache.delete(id); },
  };
}
