// Supervisor wallboard: `wallboard.update` pushed on the WebSocket (at most once a second while anything
// changes); waits and durations tick locally between pushes. Supervisors can take an agent out of rotation.
import { api } from '../shared/api.js';
import { $, banner as makeBanner, clear, errorText, h } from '../shared/dom.js';
import { addStrings, applyI18n, bindLangToggle, formatDuration, formatTime, localName, onLangChange, t, tx } from '../shared/i18n.js';
import { renderLogin, staffSession } from '../shared/staff-login.js';
import common from '../shared/strings.js';
import { Signal, sessionStore } from '../shared/ws-client.js';
import strings from './strings.js';

addStrings(common);
addStrings(strings);

const auth = staffSession('wallboard');
const bar = makeBanner($('#banner'));
const STATE_ORDER = ['available', 'offered', 'busy', 'wrap_up', 'not_responding', 'away', 'offline'];
const state = { session: null, signal: null, stats: null, receivedAt: 0, services: new Map(), ticker: null };

const pct = (v) => (v == null ? '—' : `${Math.round(v * 100)}%`);
const elapsed = () => (state.receivedAt ? (Date.now() - state.receivedAt) / 1000 : 0);

function kpi(key, value, testid, args, tone = '') {
  return h('div', { class: 'kpi ' + tone },
    h('span', { class: 'kpi-label', i18n: key, args }),
    h('span', { class: 'kpi-value', testid, text: String(value) }));
}

function renderKpis(s) {
  const windowLabel = t('wb.window', { m: Math.round((s.window_s || 900) / 60) });
  const by = s.agents_by_state || {};
  clear($('#kpis')).append(
    kpi('wb.kpi.waiting', s.waiting_total ?? 0, 'wallboard-waiting-total', null, s.waiting_total ? 'kpi-warn' : ''),
    kpi('wb.kpi.answered', s.answered ?? 0, 'wallboard-answered', { window: windowLabel }),
    kpi('wb.kpi.abandoned', s.abandoned ?? 0, 'wallboard-abandoned', { window: windowLabel }, s.abandoned ? 'kpi-bad' : ''),
    kpi('wb.kpi.abandon_rate', pct(s.abandonment_rate), 'wallboard-abandonment-rate'),
    kpi('wb.kpi.available', by.available || 0, 'wallboard-agents-available', null, 'kpi-ok'),
    kpi('wb.kpi.busy', (by.busy || 0) + (by.offered || 0), 'wallboard-agents-busy'));
}

/** A table cell that names its column (phones show rows as cards with these labels). */
function cell(tag, labelKey, attrs, ...children) {
  return h(tag, { ...attrs, 'data-label': t(labelKey) }, ...children);
}

function serviceName(code) {
  const svc = state.services.get(code);
  return svc ? localName(svc) : code;
}

function renderServices(s) {
  const body = clear($('#services-table tbody'));
  const codes = Object.keys(s.services || {}).sort((a, b) => serviceName(a).localeCompare(serviceName(b)));
  for (const code of codes) {
    const v = s.services[code];
    const slTone = v.service_level == null ? '' : v.service_level >= 0.8 ? 'good' : v.service_level >= 0.6 ? 'warn' : 'bad';
    body.append(h('tr', { testid: `wallboard-service-${code}`, dataset: { service: code } },
      h('th', { scope: 'row', text: serviceName(code) }),
      cell('td', 'wb.col.waiting', { class: 'num big' + (v.waiting ? ' warn' : ''), dataset: { field: 'waiting' }, text: String(v.waiting) }),
      cell('td', 'wb.col.longest', { class: 'num', dataset: { field: 'longest_wait_s', base: String(v.longest_wait_s), ticking: String(v.waiting > 0) },
        text: formatDuration(v.longest_wait_s) }),
      cell('td', 'wb.col.sl', { class: 'num ' + slTone, dataset: { field: 'service_level' }, text: pct(v.service_level) }),
      cell('td', 'wb.col.staffed', { class: 'num', dataset: { field: 'staffed' }, text: `${v.agents_staffed} / ${v.agents_available}` }),
      cell('td', 'wb.col.answered', { class: 'num', dataset: { field: 'answered' }, text: String(v.answered) }),
      cell('td', 'wb.col.abandoned', { class: 'num' + (v.abandoned ? ' bad' : ''), dataset: { field: 'abandoned' }, text: String(v.abandoned) }),
      cell('td', 'wb.col.aht', { class: 'num', dataset: { field: 'avg_handle_time_s' }, text: v.answered && v.avg_handle_time_s ? formatDuration(v.avg_handle_time_s) : '—' }),
      cell('td', 'wb.col.open', {}, h('span', { class: 'pill ' + (v.open ? 'pill-ok' : ''), text: t(v.open ? 'wb.open' : 'wb.closed') }))));
  }
}

function renderAgents(s) {
  const chips = clear($('#agent-states'));
  const by = s.agents_by_state || {};
  for (const st of STATE_ORDER) {
    if (!by[st]) continue;
    chips.append(h('li', { class: `chip state-${st}`, dataset: { state: st } },
      h('span', { text: t('agent_state.' + st) }), h('strong', { text: String(by[st]) })));
  }
  const body = clear($('#agents-table tbody'));
  const agents = [...(s.agents || [])].sort((a, b) =>
    STATE_ORDER.indexOf(a.state) - STATE_ORDER.indexOf(b.state) || String(a.name).localeCompare(String(b.name)));
  const canAct = state.session?.role === 'supervisor';
  for (const a of agents) {
    const away = a.state === 'away' || a.state === 'not_responding';
    const actions = [];
    if (canAct && a.state !== 'offline') {
      actions.push(h('button', { type: 'button', class: 'btn btn-sm', dataset: { key: `agent-${a.id}` },
        testid: `wallboard-agent-action-${a.id}`, text: t(away ? 'wb.put_back' : 'wb.take_out'),
        'aria-label': `${t(away ? 'wb.put_back' : 'wb.take_out')}: ${a.name}`,
        on: { click: () => setAgentStatus(a.id, away ? 'available' : 'away') } }));
    }
    if (canAct && a.state === 'busy' && a.session_id) {
      actions.push(h('button', { type: 'button', class: 'btn btn-sm btn-danger', dataset: { key: `end-${a.id}` },
        testid: `wallboard-end-call-${a.id}`, text: t('wb.end_call'), 'aria-label': `${t('wb.end_call')} ${a.name}`,
        on: { click: () => openOverride(a) } }));
    }
    const action = actions.length ? h('span', { class: 'actions' }, actions) : null;
    body.append(h('tr', { testid: `wallboard-agent-${a.id}`, dataset: { state: a.state } },
      h('th', { scope: 'row', text: a.name }),
      cell('td', 'wb.col.state', {}, h('span', { class: `pill state-${a.state}`, text: t('agent_state.' + a.state) })),
      cell('td', 'wb.col.since', { class: 'num', dataset: { field: 'since', base: String(Math.max(0, s.at - a.since)), ticking: 'true' },
        text: formatDuration(s.at - a.since) }),
      cell('td', 'wb.col.session', { class: 'mono', text: a.session_id ? a.session_id.slice(0, 8) : '—' }),
      cell('td', 'wb.col.action', {}, action)));
  }
  $('#no-agents').hidden = agents.length > 0;
  $('#agents-table').hidden = agents.length === 0;
}

function render() {
  const s = state.stats;
  if (!s) return;
  const focused = document.activeElement?.dataset?.key;
  renderKpis(s);
  renderServices(s);
  renderAgents(s);
  if (focused) document.querySelector(`[data-key="${focused}"]`)?.focus();
  tick();
}

function tick() {
  if (!state.stats) return;
  const more = elapsed();
  for (const cell of document.querySelectorAll('[data-ticking="true"]')) {
    cell.textContent = formatDuration(Number(cell.dataset.base) + more);
  }
  const live = $('#live');
  live.hidden = false;
  tx(live, 'wb.live', { time: formatTime(state.receivedAt) });
}

async function setAgentStatus(agentId, status) {
  try {
    await state.signal.request({ type: 'agent.set_status', agent_id: agentId, status });
  } catch (err) {
    bar.say('error.generic', { message: errorText(err) }, 'bad', 6000);
  }
}

// -- ending a call with checklist steps missing (supervisor override, audited) ----
let overrideFor = null;

function openOverride(agent) {
  overrideFor = agent;
  tx($('#override-target'), 'wb.override.target', { agent: agent.name, session: agent.session_id.slice(0, 8) });
  $('#override-error').textContent = '';
  $('#override-reason').value = '';
  $('#override').hidden = false;
  $('#override-reason').focus();
}

function closeOverride() {
  const key = overrideFor ? `end-${overrideFor.id}` : null;
  overrideFor = null;
  $('#override').hidden = true;
  if (key) document.querySelector(`[data-key="${key}"]`)?.focus();
}

async function confirmOverride() {
  const reason = $('#override-reason').value.trim();
  if (!reason) { tx($('#override-error'), 'wb.override.need_reason'); $('#override-reason').focus(); return; }
  const agent = overrideFor;
  $('#override-confirm').disabled = true;
  try {
    await state.signal.request({ type: 'session.end', session_id: agent.session_id,
      disposition: $('#override-disposition').value, override_reason: reason });
    closeOverride();
    bar.say('wb.override.done', { agent: agent.name }, 'ok', 6000);
  } catch (err) {
    $('#override-error').textContent = errorText(err);
  } finally {
    $('#override-confirm').disabled = false;
  }
}

function onUpdate(m) {
  state.stats = m;
  state.receivedAt = Date.now();
  document.body.dataset.updatedAt = String(m.at);
  render();
}

async function startBoard(session) {
  state.session = session;
  $('#login-view').hidden = true;
  $('#board').hidden = false;
  $('#logout').hidden = false;
  $('#who').textContent = session.display_name || session.username || '';
  try {
    for (const svc of await api('/api/v1/services')) state.services.set(svc.code, svc);
  } catch { /* codes are shown instead of names */ }
  const signal = new Signal({ token: session.token, resume: sessionStore(auth.resumeKey) });
  state.signal = signal;
  signal.on('wallboard.update', onUpdate);
  signal.on('status', (s, info) => {
    if (s === 'reconnecting') bar.say('wb.stale', null, 'warn');
    else if (s === 'connected' && info.resumed) bar.say('conn.restored', null, 'ok', 3000);
    else if (s === 'lost') bar.say('conn.lost', null, 'bad');
    else if (s === 'closed' && info.code === 1008) signOut('login.expired');
  });
  try {
    await signal.open();
  } catch (err) {
    if (['invalid_token', 'token_expired', 'unauthenticated'].includes(err.code)) { signOut('login.expired'); return; }
    bar.say('error.generic', { message: errorText(err) }, 'bad');
  }
  if (!state.stats) {
    // the server pushes the first update after hello; REST is the fallback
    try { onUpdate(await api('/api/v1/queue/stats', { token: session.token })); } catch { /* wait for the push */ }
  }
  clearInterval(state.ticker);
  state.ticker = setInterval(tick, 1000);
}

function signOut(notice) {
  state.signal?.close();
  state.signal = null;
  state.stats = null;
  clearInterval(state.ticker);
  auth.clear();
  $('#board').hidden = true;
  $('#logout').hidden = true;
  $('#live').hidden = true;
  $('#who').textContent = '';
  $('#login-view').hidden = false;
  renderLogin($('#login-view'), { roles: ['supervisor', 'admin'], notice, onSignedIn: (s) => { auth.set(s); startBoard(s); } });
}

function main() {
  bindLangToggle($('#lang-toggle'));
  applyI18n();
  $('#logout').addEventListener('click', () => signOut());
  $('#override-confirm').addEventListener('click', confirmOverride);
  $('#override-cancel').addEventListener('click', closeOverride);
  $('#override-reason').addEventListener('input', () => { $('#override-error').textContent = ''; });
  onLangChange(render);
  const session = auth.get();
  if (session) startBoard(session);
  else signOut();
}

main();
