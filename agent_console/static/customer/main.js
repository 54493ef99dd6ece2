// Customer H5 page: consent → camera preview → queue → call (with face-check prompts) → end.
// Survives network drops (resume token in sessionStorage) and reloads of the tab.
import { clientConfig } from '../shared/api.js';
import { $, $$, banner as makeBanner, countdown, errorText, playWithSound } from '../shared/dom.js';
import { addStrings, applyI18n, bindLangToggle, formatDateTime, formatDuration, onLangChange, t, tx } from '../shared/i18n.js';
import common from '../shared/strings.js';
import { Signal, sessionStore } from '../shared/ws-client.js';
import { getLocalMedia, keepAlive, MediaAccessError, PeerLink, stopStream, watchFrames } from '../shared/webrtc.js';
import { createDemoSession, setUpDemoForm } from './demo-join.js';
import { showMediaHelp } from './media-help.js';
import strings from './strings.js';

addStrings(common);
addStrings(strings);

const STORE = 'vbranch.customer';
const resumeStore = sessionStore(STORE + '.resume');
const visit = {
  load() { try { return JSON.parse(sessionStorage.getItem(STORE) || 'null'); } catch { return null; } },
  save(v) { try { sessionStorage.setItem(STORE, JSON.stringify(v)); } catch { /* private mode */ } },
  clear() { try { sessionStorage.removeItem(STORE); } catch { /* ignore */ } resumeStore.clear(); },
};

const el = {
  local: $('#local-video'), remote: $('#remote-video'), join: $('#join'), joinError: $('#join-error'),
  leave: $('#leave'), previewStatus: $('#preview-status'), mediaError: $('#media-error'),
  position: $('#queue-position'), wait: $('#queue-wait'), notice: $('#queue-notice'), caption: $('#call-caption'),
  challenge: $('#challenge'), challengeText: $('#challenge-text'), challengeCount: $('#challenge-count'),
  endReason: $('#end-reason'), consentStatus: $('#consent-status'), demoForm: $('#demo-form'),
};
const bar = makeBanner($('#banner'));

const state = {
  config: null, token: null, consent: null, stream: null, signal: null, link: null, iceServers: [],
  screen: 'loading', ended: false, resuming: false, createdHere: false, agentName: null, queue: null, stopChallenge: null,
};

function go(screen) {
  const changed = state.screen !== screen;
  state.screen = screen;
  document.body.dataset.screen = screen;
  for (const node of $$('[data-screens]')) node.hidden = !node.dataset.screens.split(' ').includes(screen);
  tx(el.leave, screen === 'call' ? 'call.leave' : 'queue.leave');
  if (changed) {
    const heading = $(`section[data-screens~="${screen}"] h2`);
    if (heading && !heading.closest('[hidden]')) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
  }
}

function tokenFromUrl() {
  return new URLSearchParams(location.hash.replace(/^#/, '')).get('token');
}

/** A join token that is clearly unusable (malformed or past its expiry): no need to ask for consent first. */
function tokenLooksExpired(token) {
  try {
    const payload = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    return typeof payload.exp === 'number' && payload.exp * 1000 < Date.now();
  } catch {
    return true;
  }
}

// -- consent ---------------------------------------------------------------
function locate() {
  return new Promise((resolve) => {
    if (!navigator.geolocation) { resolve(null); return; }
    navigator.geolocation.getCurrentPosition(
      (p) => resolve({ lat: p.coords.latitude, lon: p.coords.longitude, accuracy_m: Math.round(p.coords.accuracy || 0) }),
      () => resolve(null), { timeout: 8000, maximumAge: 60000, enableHighAccuracy: false });
  });
}

async function giveConsent(face) {
  const buttons = $$('section[data-screens="consent"] button');
  buttons.forEach((b) => { b.disabled = true; });
  const consent = { recording: true, face };
  if ($('#consent-location').checked) {
    tx(el.consentStatus, 'consent.locating');
    const where = await locate();
    if (where) consent.location = where;
    else tx(el.consentStatus, 'consent.location_failed');
  }
  buttons.forEach((b) => { b.disabled = false; });
  state.consent = consent;
  await enterSetup();
}

// -- camera preview and joining ----------------------------------------------
async function enterSetup() {
  go('setup');
  if (!state.token && state.config.demo && el.demoForm.hidden) {
    try { await setUpDemoForm(el.demoForm); } catch (err) { el.joinError.textContent = errorText(err); }
  }
  await startPreview();
}

async function startPreview() {
  el.mediaError.hidden = true;
  el.join.disabled = true;
  tx(el.previewStatus, 'setup.starting');
  try {
    stopStream(state.stream);
    state.stream = await getLocalMedia();
    el.local.srcObject = state.stream;
    el.local.play().catch(() => {});
    document.body.dataset.media = 'ok';
    tx(el.previewStatus, state.resuming ? 'setup.rejoining' : 'setup.ready');
    el.join.disabled = false;
    if (state.resuming) await join();
  } catch (err) {
    state.stream = null;
    document.body.dataset.media = 'error';
    el.previewStatus.textContent = '';
    delete el.previewStatus.dataset.i18n;
    showMediaHelp(el.mediaError, err instanceof MediaAccessError ? err.kind : 'other');
    $('#media-retry').focus();
  }
}

async function join() {
  el.join.disabled = true;
  tx(el.join, 'setup.joining');
  el.joinError.textContent = '';
  try {
    if (!state.token) {
      const created = await createDemoSession(el.demoForm, el.local);
      state.token = created.join_token;
      state.createdHere = true;
      if (created.photoRefused) bar.say('demo.photo_refused', null, 'warn', 8000);
    }
    visit.save({ token: state.token, consent: state.consent, createdHere: Boolean(state.createdHere) });
    await connect();
  } catch (err) {
    if (state.ended) return;
    state.signal?.close();  // a half-made connection would hold the session ("session_in_use")
    state.signal = null;
    el.joinError.textContent = errorText(err);
    el.join.disabled = false;
  } finally {
    tx(el.join, 'setup.join');
  }
}

async function connect() {
  const signal = new Signal({ token: state.token, resume: resumeStore, resumeWindowS: state.config.resume_window_s || 60 });
  state.signal = signal;
  signal.on('queue.update', renderQueue);
  signal.on('session.assigned', (m) => { state.agentName = m.agent_name; startCall(); });
  signal.on('facecheck.challenge', showChallenge);
  signal.on('rtc.ice', (m) => state.link?.addRemoteCandidate(m.candidate));
  signal.on('media.state', (m) => {
    if (m.party === 'agent') state.peerMedia = m.state;
    else state.ownMedia = m.state;  // what the bank receives of this customer
    renderCaption();
  });
  signal.on('facecheck.done', challengeDone);
  signal.on('session.ended', (m) => finish(m.reason));
  signal.on('status', onSignalStatus);
  signal.on('resumed', (welcome) => {
    // back after a drop or a server restart: the next place we hear of is said aloud
    if (welcome.state === 'queued' || welcome.state === 'offered') state.backInQueue = true;
    followWelcome(welcome);
  });
  let welcome;
  try {
    welcome = await signal.open();
  } catch (err) {
    if (['session_closed', 'not_found', 'invalid_token', 'token_expired'].includes(err.code)) {
      finish(err.code === 'session_closed' ? 'closed' : 'invalid');
      return;
    }
    throw err;
  }
  state.iceServers = welcome.ice_servers || [];
  if (!welcome.consent || !welcome.consent.recording) {
    await signal.request({ type: 'consent', ...state.consent });
  }
  followWelcome(welcome);
}

function followWelcome(welcome) {
  if (state.ended) return;
  if (welcome.state === 'connected') {
    if (state.screen !== 'call' || !state.link || state.link.state !== 'connected') startCall();
  } else if (welcome.state === 'queued' || welcome.state === 'offered') {
    if (state.screen === 'setup') go('queue');
  } else {
    finish('closed');
  }
}

function onSignalStatus(s, info) {
  if (state.ended) return;
  if (s === 'reconnecting') bar.say(info.restarting ? 'conn.restarting' : 'conn.reconnecting', { n: info.attempt }, 'warn');
  else if (s === 'connected' && info.resumed) bar.say('conn.restored', null, 'ok', 3000);
  else if (s === 'lost') finish(info.code === 'session_closed' ? 'closed' : 'connection_lost');
  else if (s === 'closed' && info.code === 4001) finish('superseded');
  else if (s === 'closed' && info.code === 1008) {
    finish(['invalid_token', 'token_expired', 'unauthenticated'].includes(info.reason) ? 'invalid' : 'closed');
  }
}

// -- queue -------------------------------------------------------------------
function renderQueue(m) {
  state.queue = m;
  if (state.backInQueue) {
    state.backInQueue = false;
    bar.say('conn.back_in_queue', { position: m.position }, 'ok', 5000);
  }
  el.position.textContent = String(m.position);
  el.position.dataset.position = String(m.position);
  const wait = m.estimated_wait_s;
  if (wait == null) tx(el.wait, m.notice ? 'queue.wait_none' : 'queue.wait_unknown');
  else if (wait <= 0) tx(el.wait, 'queue.wait_soon');
  else { delete el.wait.dataset.i18n; el.wait.textContent = formatDuration(wait); }
  el.notice.dataset.notice = m.notice || '';
  if (m.notice === 'no_agents') tx(el.notice, 'queue.no_agents');
  else if (m.notice === 'service_closed') {
    if (m.opens_at) tx(el.notice, 'queue.service_closed', { opens: formatDateTime(m.opens_at) });
    else tx(el.notice, 'queue.service_closed_plain');
  }
  el.notice.hidden = !m.notice;
  if (state.screen === 'setup') go('queue');
}
onLangChange(() => { if (state.queue) renderQueue(state.queue); });

// -- the call ----------------------------------------------------------------
async function startCall() {
  if (state.ended) return;
  go('call');
  renderCaption();
  if (!state.link) {
    state.link = new PeerLink({
      iceServers: state.iceServers, stream: state.stream,
      onRemote: (stream) => {
        if (el.remote.srcObject !== stream) el.remote.srcObject = stream;
        playWithSound(el.remote, $('#unmute'));
      },
      onState: (s) => {
        el.remote.dataset.connection = s;
        if (s === 'failed' || s === 'disconnected') {
          bar.say('call.media_retry', null, 'warn');
          state.signal?.probe();  // a network change takes the socket too: find out now, not at the next ping
        }
        else if (s === 'connected') bar.hide();
        renderCaption();
      },
    });
    keepAlive(state.link, reconnectMedia);
    state.stopWatch = watchFrames(el.remote, (moving) => {
      state.moving = moving;
      el.remote.dataset.video = moving ? 'playing' : 'none';
      renderCaption();
    });
  }
  try {
    await reconnectMedia();  // the first time a new connection; after a drop an ICE restart if it can
  } catch (err) {
    console.warn('media negotiation failed', err);
  }
}

async function reconnectMedia() {
  if (state.ended || !state.signal) return;
  await state.link.reconnect(
    async (sdp, { iceRestart } = {}) => (await state.signal.request(
      { type: 'rtc.offer', sdp, ...(iceRestart ? { ice_restart: true } : {}) }, 20000)).sdp,
    (candidate) => state.signal.request({ type: 'rtc.ice', candidate })
      .catch((err) => console.warn('candidate refused', err.code, err.message)));
}

// The caption says what is true: the employee's video moves, or why it does not.
function renderCaption() {
  if (state.screen !== 'call') return;
  const link = state.link ? state.link.state : 'new';
  let key = 'call.connecting';
  let args = null;
  if (state.ownMedia === 'stalled' || state.ownMedia === 'lost' || state.ownMedia === 'not_connected') {
    key = 'call.own_lost';
  } else if (state.moving) {
    key = state.agentName ? 'call.with' : 'call.connecting';
    args = { name: state.agentName };
  } else if (state.peerMedia === 'stalled') key = 'call.peer_stalled';
  else if (state.peerMedia === 'lost') key = 'call.peer_lost';
  else if (state.peerMedia === 'not_connected') key = 'call.peer_not_connected';
  else if (link === 'connected') key = 'call.waiting_video';
  el.caption.dataset.state = key.slice(5);
  tx(el.caption, key, args);
}

function showChallenge(m) {
  state.stopChallenge?.();
  el.challenge.dataset.action = m.action;
  const key = 'fc.' + m.action;
  tx(el.challengeText, key);
  el.challenge.hidden = false;
  const deadline = Date.now() + (m.timeout_s || 5) * 1000;
  state.stopChallenge = countdown(deadline, (left) => tx(el.challengeCount, 'fc.countdown', { s: Math.ceil(left) }));
}

function challengeDone() {
  state.stopChallenge?.();
  tx(el.challengeText, 'fc.done');
  el.challengeCount.textContent = '';
  delete el.challengeCount.dataset.i18n;
  el.challenge.dataset.action = 'done';
  setTimeout(() => { if (el.challenge.dataset.action === 'done') el.challenge.hidden = true; }, 3000);
}

// -- leaving and the end -----------------------------------------------------
async function leave() {
  el.leave.disabled = true;
  try {
    if (state.signal) await state.signal.request({ type: 'leave' }, 5000);
  } catch { /* the end screen shows all the same */ }
  finish('customer_left');
}

function finish(reason) {
  if (state.ended) return;
  state.ended = true;
  state.stopChallenge?.();
  el.challenge.hidden = true;
  state.stopWatch?.();
  state.link?.close();
  stopStream(state.stream);
  el.local.srcObject = null;
  el.remote.srcObject = null;
  state.signal?.close();
  visit.clear();
  bar.hide();
  const key = 'end.' + reason;
  tx(el.endReason, t(key) !== key ? key : 'end.closed');
  el.endReason.dataset.reason = reason;
  $('#restart').hidden = !(state.config?.demo && state.createdHere);  // only for sessions this page made
  go(reason === 'invalid' ? 'invalid' : 'end');
}

// -- start -------------------------------------------------------------------
async function main() {
  bindLangToggle($('#lang-toggle'));
  applyI18n();
  $('#consent-accept').addEventListener('click', () => giveConsent(true));
  $('#consent-recording-only').addEventListener('click', () => giveConsent(false));
  $('#consent-decline').addEventListener('click', () => go('declined'));
  $('#declined-back').addEventListener('click', () => go('consent'));
  $('#media-retry').addEventListener('click', startPreview);
  el.join.addEventListener('click', join);
  el.leave.addEventListener('click', leave);
  $('#restart').addEventListener('click', () => { location.href = '/customer/'; });

  state.config = await clientConfig();
  const urlToken = tokenFromUrl();
  const previous = visit.load();
  state.token = urlToken || previous?.token || null;
  if ((!state.token && !state.config.demo) || (state.token && tokenLooksExpired(state.token))) {
    visit.clear();
    go('invalid');
    return;
  }
  if (previous && previous.token === state.token && previous.consent) {
    // the tab was reloaded during a visit: carry on with the same session
    state.consent = previous.consent;
    state.createdHere = Boolean(previous.createdHere);
    state.resuming = true;
    await enterSetup();
    return;
  }
  if (previous) visit.clear();
  go('consent');
}

main();
