// What the agent sees about a customer: the offer's details and the call's customer/service summary.
import { clear, h } from '../shared/dom.js';
import { localName, t } from '../shared/i18n.js';

function fact(dl, key, value, testid) {
  dl.append(h('dt', { i18n: key }), h('dd', { text: value == null || value === '' ? '—' : String(value), testid }));
}

export function serviceName(services, code) {
  const svc = services.get(code);
  return svc ? localName(svc) : code;
}

function channelName(code) {
  const key = 'channel.' + code;
  return t(key) !== key ? t(key) : code || '—';
}

export function renderOfferDetails(dl, offer, services) {
  clear(dl);
  fact(dl, 'offer.customer', `${offer.customer?.name || '—'} (${offer.customer?.ref || '—'})`, 'offer-customer');
  fact(dl, 'offer.service', serviceName(services, offer.service), 'offer-service');
  fact(dl, 'offer.channel', channelName(offer.customer?.channel));
  if (offer.priority) fact(dl, 'offer.priority', String(offer.priority));
}

export function renderCallSummary(dl, call, services) {
  clear(dl);
  fact(dl, 'summary.name', call.customer?.name, 'summary-name');
  fact(dl, 'summary.ref', call.customer?.ref);
  fact(dl, 'summary.channel', channelName(call.customer?.channel));
  fact(dl, 'summary.service', serviceName(services, call.service), 'summary-service');
  fact(dl, 'summary.session', call.session_id);
  if (call.consent) {
    const given = ['recording', 'face', 'location'].filter((k) => call.consent[k]).map((k) => t('consent.' + k));
    fact(dl, 'summary.consent', given.join(' · '));
  }
}

/** The call in progress, kept in sessionStorage so a reload of the console carries on with it. */
const CALL_KEY = 'vbranch.agent.call';

export function saveCall(call) {
  if (!call) { sessionStorage.removeItem(CALL_KEY); return; }
  sessionStorage.setItem(CALL_KEY, JSON.stringify({ ...call, marked: [...call.marked] }));
}

export function loadCall() {
  try {
    const c = JSON.parse(sessionStorage.getItem(CALL_KEY) || 'null');
    return c ? { ...c, marked: new Map(c.marked) } : null;
  } catch { return null; }
}
