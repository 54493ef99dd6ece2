// Reviewer console: sign in, find sessions, replay both parties in sync with timeline markers,
// check integrity, record a verdict.
import { api } from '../shared/api.js';
import { $, banner as makeBanner, errorText } from '../shared/dom.js';
import { addStrings, applyI18n, bindLangToggle, onLangChange } from '../shared/i18n.js';
import { renderLogin, staffSession } from '../shared/staff-login.js';
import common from '../shared/strings.js';
import { initSearch } from './search.js';
import { openSession } from './session-view.js';
import strings from './strings.js';

addStrings(common);
addStrings(strings);

const auth = staffSession('review');
const bar = makeBanner($('#banner'));
const state = { session: null, services: new Map(), search: null, closeDetail: null, openId: null };

async function showSession(id) {
  state.closeDetail?.();
  state.closeDetail = null;
  state.openId = id;
  const body = $('#detail-body');
  document.body.dataset.view = 'detail';
  $('#detail-empty').hidden = true;
  body.hidden = false;
  try {
    state.closeDetail = await openSession(body, id, {
      token: state.session.token, services: state.services,
      onBack: () => { document.body.dataset.view = 'list'; $(`[data-session-id="${id}"]`)?.focus(); },
      onSaved: () => state.search?.forget(id),
    });
    $('#detail').scrollIntoView({ block: 'start' });
  } catch (err) {
    if (err.status === 401) { signOut('login.expired'); return; }
    bar.say('error.generic', { message: errorText(err) }, 'bad', 8000);
  }
}

async function startReview(session) {
  state.session = session;
  $('#login-view').hidden = true;
  $('#review').hidden = false;
  $('#logout').hidden = false;
  $('#who').textContent = session.display_name || session.username || '';
  document.body.dataset.view = 'list';
  try {
    for (const svc of await api('/api/v1/services')) state.services.set(svc.code, svc);
  } catch { /* codes instead of names */ }
  state.search = initSearch({
    form: $('#search-form'), results: $('#results'), summary: $('#results-summary'), more: $('#more'),
    token: session.token, services: state.services, onOpen: showSession,
  });
  try {
    await state.search.refresh();
  } catch (err) {
    if (err.status === 401) signOut('login.expired');
    else bar.say('error.generic', { message: errorText(err) }, 'bad', 8000);
  }
}

function signOut(notice) {
  state.closeDetail?.();
  state.closeDetail = null;
  auth.clear();
  $('#review').hidden = true;
  $('#logout').hidden = true;
  $('#who').textContent = '';
  $('#login-view').hidden = false;
  renderLogin($('#login-view'), { roles: ['reviewer', 'admin'], notice, onSignedIn: (s) => { auth.set(s); startReview(s); } });
}

function main() {
  bindLangToggle($('#lang-toggle'));
  applyI18n();
  $('#logout').addEventListener('click', () => { signOut(); location.reload(); });
  onLangChange(() => { if (state.openId && !$('#detail-body').hidden) showSession(state.openId); });
  const session = auth.get();
  if (session) startReview(session);
  else signOut();
}

main();
