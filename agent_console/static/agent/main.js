// Agent console: sign in, available/away, offers with a countdown, the call with face check,
// checklist, notes and disposition, wrap-up; reconnects with the resume token.
import { api } from '../shared/api.js';
import { $, banner as makeBanner, countdown, errorText } from '../shared/dom.js';
import { addStrings, applyI18n, bindLangToggle, localName, onLangChange, t, tx } from '../shared/i18n.js';
import { renderLogin, staffSession } from '../shared/staff-login.js';
import common from '../shared/strings.js';
import { Signal, sessionStore } from '../shared/ws-client.js';
import { CallMedia } from './call-media.js';
import { missingMandatory, renderChecklist } from './checklist.js';
import { renderFaceCheck } from './facecheck-panel.js';
import strings from './strings.js';
import { loadCall, renderCallSummary, renderOfferDetails, saveCall } from './summary.js';

addStrings(common);
addStrings(strings);

const auth = staffSession('agent');
const bar = makeBanner($('#banner'));
const el = {
  status: $('#agent-status'), idle: $('#idle-card'), idleText: $('#idle-text'), offer: $('#offer-card'),
  offerDetails: $('#offer-details'), offerCountdown: $('#offer-countdown'), call: $('#call-card'), wrap: $('#wrap-card'),
  wrapCountdown: $('#wrap-countdown'), wrapEnded: $('#wrap-ended'), side: $('#side'), summary: $('#summary'),
  fcStatus: $('#facecheck-status'), fcResult: $('#facecheck-result'), checklist: $('#checklist'),
  missing: $('#checklist-missing'), endError: $('#end-error'), endButton: $('#end-session'),
};

const media = new CallMedia(
  { local: $('#local-video'), remote: $('#remote-video'), unmute: $('#unmute'), caption: $('#call-state') },
  { onCameraError: (err) => bar.say('call.no_camera', { kind: err.kind || err.name }, 'warn', 10000),
    // a network change takes the socket too: find out now, not at the next ping
    onMediaLost: () => state.signal?.probe() });

const state = {
  media,
  session: null, signal: null, status: 'offline', until: null, offer: null, call: null, services: new Map(),
  stopOffer: null, stopWrap: null, iceServers: [], lastResult: null,
};

// -- status ------------------------------------------------------------------
function setStatus(status, until) {
  state.status = status;
  state.until = until ?? null;
  tx(el.status, 'agent_state.' + status);
  el.status.dataset.status = status;
  el.status.className = 'pill ' + ({ available: 'pill-ok', busy: 'pill-info', offered: 'pill-info', wrap_up: 'pill-warn',
    not_responding: 'pill-bad' }[status] || '');
  $('#status-available').setAttribute('aria-pressed', String(status === 'available'));
  $('#status-away').setAttribute('aria-pressed', String(status === 'away'));
  if (status === 'wrap_up') showWrapUp(until);
  else if (state.stopWrap || !el.wrap.hidden) closeWrapUp();
  if (status === 'not_responding') bar.say('agent.idle.not_responding', null, 'warn');
  renderIdle();
}

function renderIdle() {
  const busy = state.offer || state.call || state.status === 'wrap_up';
  el.idle.hidden = Boolean(busy);
  const key = { available: 'agent.idle.available', not_responding: 'agent.idle.not_responding',
    offline: 'agent.idle.offline' }[state.status] || 'agent.idle.away';
  tx(el.idleText, key);
}

async function requestStatus(status) {
  state.chosen = status; // what the agent asked for: kept through a reconnect (see onResumed)
  try {
    const reply = await state.signal.request({ type: 'agent.status', status });
    if (status === 'available') bar.hide();
    setStatus(reply.status);
  } catch (err) {
    bar.say('error.generic', { message: errorText(err) }, 'bad', 6000);
  }
}

// -- offers -----------------------------------------------------------------
function renderOffer() {
  renderOfferDetails(el.offerDetails, state.offer, state.services);
}

function showOffer(m) {
  state.offer = m;
  state.stopOffer?.();
  renderOffer();
  el.offer.hidden = false;
  renderIdle();
  state.stopOffer = countdown(Date.now() + m.expires_in_s * 1000,
    (left) => tx(el.offerCountdown, 'offer.countdown', { s: Math.ceil(left) }),
    () => { if (state.offer === m) { hideOffer(); bar.say('offer.expired', null, 'warn', 5000); } });
  $('#offer-accept').disabled = false;
  $('#offer-decline').disabled = false;
  $('#offer-accept').focus();
}

function hideOffer() {
  state.stopOffer?.();
  state.stopOffer = null;
  state.offer = null;
  el.offer.hidden = true;
  renderIdle();
}

async function answerOffer(accept) {
  const offer = state.offer;
  if (!offer) return;
  $('#offer-accept').disabled = true;
  $('#offer-decline').disabled = true;
  try {
    // on accept, session.connected (handled by startCall) comes before this reply
    await state.signal.request({ type: accept ? 'offer.accept' : 'offer.decline', session_id: offer.session_id });
  } catch (err) {
    bar.say('error.generic', { message: errorText(err) }, 'bad', 6000);
  }
  hideOffer();
}

// -- the call ----------------------------------------------------------------
function renderSummary() {
  renderCallSummary(el.summary, state.call, state.services);
}

function stepsOf(call) {
  return state.services.get(call.service)?.checklist || [];
}

function renderSteps() {
  const c = state.call;
  const steps = stepsOf(c);
  renderChecklist(el.checklist, steps, c.marked, c.facecheckPassed, markStep);
  const missing = missingMandatory(steps, c.marked, c.facecheckPassed);
  if (missing.length) tx(el.missing, 'checklist.missing', { n: missing.length });
  else { el.missing.textContent = ''; delete el.missing.dataset.i18n; }
}

async function markStep(code) {
  const reply = await state.signal.request({ type: 'checklist.mark', session_id: state.call.session_id, step: code });
  state.call.marked.set(code, Date.now());
  for (const s of reply.checklist || []) {
    if (s.kind === 'facecheck') state.call.facecheckPassed = Boolean(s.done);
    else if (s.done && !state.call.marked.has(s.code)) state.call.marked.set(s.code, Date.now());
  }
  saveCall(state.call);
  renderSteps();
  const next = [...el.checklist.querySelectorAll('button.step-toggle')].find((b) => !b.disabled);
  next?.focus();
}

async function startCall(sessionId) {
  if (!state.call || state.call.session_id !== sessionId) {
    const offer = state.offer && state.offer.session_id === sessionId ? state.offer : null;
    const stored = loadCall();
    state.call = stored && stored.session_id === sessionId ? stored
      : { session_id: sessionId, service: offer?.service ?? null, customer: offer?.customer ?? null, marked: new Map(),
        facecheckPassed: false };
  }
  saveCall(state.call);
  hideOffer();
  el.call.hidden = false;
  el.side.hidden = false;
  el.wrap.hidden = true;
  $('#end-session').disabled = false;
  $('#facecheck-start').disabled = false;
  el.fcStatus.textContent = '';
  el.endError.textContent = '';
  renderSummary();
  renderSteps();
  renderIdle();
  await state.media.start(state.iceServers,
    async (sdp, { iceRestart } = {}) => (await state.signal.request(
      { type: 'rtc.offer', session_id: sessionId, sdp, ...(iceRestart ? { ice_restart: true } : {}) }, 20000)).sdp,
    (candidate) => state.signal.request({ type: 'rtc.ice', session_id: sessionId, candidate })
      .catch((err) => console.warn('candidate refused', err.code, err.message)));
  // consent (and, after a reload, the customer's details) come from the session itself
  loadSessionDetails(sessionId);
}

async function loadSessionDetails(sessionId) {
  try {
    const s = await api(`/api/v1/sessions/${sessionId}`, { token: state.session.token });
    if (!state.call || state.call.session_id !== sessionId) return;
    Object.assign(state.call, { service: s.service, customer: { ...state.call.customer, ...s.customer, channel: s.channel },
      consent: s.consent });
    saveCall(state.call);
    renderSummary();
    renderSteps();
  } catch { /* the summary stays short */ }
}

async function startFaceCheck() {
  const button = $('#facecheck-start');
  button.disabled = true;
  el.fcResult.hidden = true;
  try {
    await state.signal.request({ type: 'facecheck.start', session_id: state.call.session_id });
    tx(el.fcStatus, 'fc.running');
    el.fcStatus.dataset.state = 'running';
  } catch (err) {
    el.fcStatus.textContent = errorText(err);
    el.fcStatus.dataset.state = 'error';
    el.fcStatus.dataset.code = err.code || '';
    button.disabled = false;
  }
}

function onFaceCheckResult(m) {
  if (state.call && m.session_id && m.session_id !== state.call.session_id) return;
  state.lastResult = m;
  el.fcStatus.textContent = '';
  el.fcStatus.dataset.state = 'done';
  renderFaceCheck(el.fcResult, m);
  $('#facecheck-start').disabled = !state.call;
  if (state.call && m.match && m.liveness && m.liveness.passed) {
    state.call.facecheckPassed = true;
    saveCall(state.call);
    renderSteps();
  }
}

async function endSession() {
  el.endButton.disabled = true;
  el.endError.textContent = '';
  const notes = $('#notes').value.trim();
  try {
    await state.signal.request({ type: 'session.end', session_id: state.call.session_id,
      disposition: $('#disposition').value, ...(notes ? { notes } : {}) });
  } catch (err) {
    if (err.code === 'checklist_incomplete') {
      const steps = stepsOf(state.call);
      const codes = (err.msg?.details || []).map((d) => d.problem);
      const names = codes.map((code) => localName(steps.find((s) => s.code === code)) || code);
      el.endError.textContent = t('err.checklist_incomplete', { steps: names.join('、') });
    } else if (err.code === 'evidence_incomplete') {
      const parties = [...new Set((err.msg?.details || []).map((d) => t('party.' + d.party)))];
      el.endError.textContent = t('err.evidence_incomplete', { parties: parties.join('、') });
      el.endError.dataset.code = err.code;
    } else {
      el.endError.textContent = errorText(err);
    }
    el.endButton.disabled = false;
  }
}

function callEnded(m) {
  if (state.call && m.session_id && m.session_id !== state.call.session_id) return;
  state.media.stop();
  el.call.hidden = true;
  el.side.hidden = true;
  const key = 'ended.' + m.reason;
  tx(el.wrapEnded, t(key) !== key ? key : 'ended.completed');
  if (state.status !== 'wrap_up') showWrapUp(null);
  state.call = null;
  saveCall(state.call);
  $('#notes').value = '';
  $('#disposition').value = 'completed';
  el.fcResult.hidden = true;
  el.fcStatus.textContent = '';
  renderIdle();
}

// -- wrap-up -----------------------------------------------------------------
function showWrapUp(until) {
  state.stopWrap?.();
  el.wrap.hidden = false;
  $('#wrapup-done').disabled = false;
  if (until) {
    state.stopWrap = countdown(until * 1000, (left) => tx(el.wrapCountdown, 'wrap.countdown', { s: Math.ceil(left) }));
  } else {
    tx(el.wrapCountdown, 'wrap.no_deadline');
  }
  renderIdle();
}

function closeWrapUp() {
  state.stopWrap?.();
  state.stopWrap = null;
  el.wrap.hidden = true;
  el.wrapEnded.textContent = '';
  delete el.wrapEnded.dataset.i18n;
}

async function wrapUpDone() {
  $('#wrapup-done').disabled = true;
  try {
    await state.signal.request({ type: 'wrapup.done' });
  } catch (err) {
    bar.say('error.generic', { message: errorText(err) }, 'bad', 6000);
    $('#wrapup-done').disabled = false;
  }
}

// -- connection --------------------------------------------------------------
function enableStatusButtons(on) {
  $('#status-available').disabled = !on;
  $('#status-away').disabled = !on;
}

function onSignalStatus(s, info) {
  enableStatusButtons(s === 'connected');
  if (s === 'reconnecting') bar.say(info.restarting ? 'conn.restarting' : 'conn.reconnecting', { n: info.attempt }, 'warn');
  else if (s === 'connected' && info.resumed) bar.say('conn.restored', null, 'ok', 3000);
  else if (s === 'lost') bar.say('conn.lost', null, 'bad');
  else if (s === 'closed' && info.code === 4001) bar.say('conn.superseded', null, 'bad');
  else if (s === 'closed' && info.code === 1008) signOut('login.expired');
}

function followWelcome(welcome) {
  state.iceServers = welcome.ice_servers || [];
  setStatus(welcome.status);
  if (welcome.status === 'busy' && welcome.call) {
    // the server's word on the call and its checklist (after a reload, a reconnect or a restart);
    // this tab's own copy only adds what the server does not repeat (the customer's details)
    const call = callFromServer(welcome.call, state.call || loadCall());
    const same = state.call && state.call.session_id === call.session_id;
    state.call = call;
    saveCall(call);
    if (!same || !state.media.connected) startCall(call.session_id);
    else renderSteps();
  } else if (welcome.status !== 'busy' && state.call) {
    callEnded({ session_id: state.call.session_id, reason: 'completed' });
  }
}

function callFromServer(call, mine) {
  const marked = new Map();
  let facecheckPassed = false;
  for (const s of call.checklist || []) {
    if (s.kind === 'facecheck') facecheckPassed = Boolean(s.done);
    else if (s.done) marked.set(s.code, (mine?.marked?.get(s.code)) ?? Date.now());
  }
  const customer = mine && mine.session_id === call.session_id ? mine.customer : null;
  return { session_id: call.session_id, service: call.service, customer, marked, facecheckPassed };
}

// Back after a drop or a server restart. The server puts an absent agent away (no offers to
// nobody); an agent who had chosen available is made available again without a click.
function onResumed(welcome) {
  const hadCall = Boolean(state.call);
  followWelcome(welcome);
  if (!hadCall && welcome.status === 'away' && state.chosen === 'available') requestStatus('available');
}

async function startConsole(session) {
  state.session = session;
  $('#login-view').hidden = true;
  $('#console-view').hidden = false;
  $('#status-controls').hidden = false;
  enableStatusButtons(false);
  $('#logout').hidden = false;
  $('#who').textContent = session.display_name || session.username || '';
  try {
    for (const svc of await api('/api/v1/services')) state.services.set(svc.code, svc);
  } catch { /* names fall back to codes */ }
  const signal = new Signal({ token: session.token, resume: sessionStore(auth.resumeKey) });
  state.signal = signal;
  signal.on('agent.status', (m) => setStatus(m.status, m.until));
  signal.on('offer', showOffer);
  signal.on('offer.revoked', (m) => {
    if (state.offer && state.offer.session_id === m.session_id) {
      hideOffer();
      const reason = t('reason.' + m.reason) !== 'reason.' + m.reason ? t('reason.' + m.reason) : m.reason;
      bar.say('offer.revoked', { reason }, 'warn', 6000);
    }
  });
  signal.on('session.connected', (m) => startCall(m.session_id));
  signal.on('session.ended', callEnded);
  signal.on('facecheck.result', onFaceCheckResult);
  signal.on('rtc.ice', (m) => { if (state.call?.session_id === m.session_id) state.media.addRemoteCandidate(m.candidate); });
  signal.on('media.state', (m) => {
    if (state.call?.session_id === m.session_id && m.party === 'customer') state.media.peerState(m.state);
  });
  signal.on('status', onSignalStatus);
  signal.on('resumed', onResumed);
  try {
    const welcome = await signal.open();
    if (welcome.agent?.display_name) $('#who').textContent = welcome.agent.display_name;
    followWelcome(welcome);
  } catch (err) {
    if (['invalid_token', 'token_expired', 'unauthenticated'].includes(err.code)) signOut('login.expired');
    else bar.say('error.generic', { message: errorText(err) }, 'bad');
  }
}

function signOut(notice) {
  state.signal?.close();
  state.signal = null;
  state.media.stop();
  hideOffer();
  state.call = null;
  saveCall(state.call);
  auth.clear();
  $('#console-view').hidden = true;
  $('#status-controls').hidden = true;
  $('#logout').hidden = true;
  $('#who').textContent = '';
  $('#login-view').hidden = false;
  renderLogin($('#login-view'), { roles: ['agent'], notice, onSignedIn: (s) => { auth.set(s); startConsole(s); } });
}

function main() {
  bindLangToggle($('#lang-toggle'));
  applyI18n();
  $('#status-available').addEventListener('click', () => requestStatus('available'));
  $('#status-away').addEventListener('click', () => requestStatus('away'));
  $('#offer-accept').addEventListener('click', () => answerOffer(true));
  $('#offer-decline').addEventListener('click', () => answerOffer(false));
  $('#facecheck-start').addEventListener('click', startFaceCheck);
  el.endButton.addEventListener('click', endSession);
  $('#wrapup-done').addEventListener('click', wrapUpDone);
  $('#logout').addEventListener('click', () => signOut());
  onLangChange(() => {
    if (state.offer) renderOffer();
    if (state.call) { renderSummary(); renderSteps(); }
    if (state.lastResult && !el.fcResult.hidden) renderFaceCheck(el.fcResult, state.lastResult);
  });
  const session = auth.get();
  if (session) startConsole(session);
  else signOut();
}

main();
