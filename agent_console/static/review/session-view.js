// One session for review: facts, synced replay, timeline markers, integrity, verdict.
import { api } from '../shared/api.js';
import { clear, h } from '../shared/dom.js';
import { formatDateTime, localName, t } from '../shared/i18n.js';
import { buildIntegrity } from './integrity-view.js';
import { buildReplay } from './replay-view.js';
import { buildTimeline, ticksFor, withOffsets } from './timeline-view.js';
import { buildVerdict } from './verdict-view.js';

function facts(s, service) {
  const dl = h('dl', { class: 'facts', testid: 'session-facts' });
  const add = (key, value) => dl.append(h('dt', { i18n: key }), h('dd', { text: value == null || value === '' ? '—' : String(value) }));
  const consent = s.consent || {};
  add('rv.facts.session', s.session_id);
  add('rv.facts.customer', `${s.customer?.name || '—'} (${s.customer?.ref || '—'})`);
  add('rv.facts.channel', s.channel);
  add('rv.facts.created', formatDateTime(s.created_at));
  add('rv.facts.connected', s.connected_at && formatDateTime(s.connected_at));
  add('rv.facts.ended', s.ended_at && formatDateTime(s.ended_at));
  add('rv.facts.agent', s.agent_id ? t('rv.agent_id', { id: s.agent_id }) : t('rv.no_agent'));
  const named = (prefix, v) => (v && t(prefix + v) !== prefix + v ? t(prefix + v) : v);
  add('rv.facts.disposition', named('disp.', s.disposition));
  add('rv.facts.end_reason', named('reason.', s.end_reason));
  add('rv.facts.notes', s.notes);
  add('rv.facts.consent', ['recording', 'face', 'location'].filter((k) => consent[k]).map((k) => t('consent.' + k)).join(' · '));
  if (s.legal_hold) add('rv.facts.legal_hold', '✓');
  return dl;
}

/** Dual recording: whether the recordings cover both parties, what they miss, and any acknowledgement. */
export function describeIssue(issue) {
  const party = t('party.' + issue.party);
  if (issue.reason === 'gap') {
    return t('rv.evidence.gap', { party, s: issue.duration_s, from: issue.start_offset_s, to: issue.end_offset_s });
  }
  return t('rv.evidence.' + issue.reason, { party });
}

function evidenceFlag(s) {
  if (!s.evidence_incomplete) return null;
  const ack = s.evidence_acknowledged;
  return h('section', { class: `card evidence-flag ${ack ? 'acknowledged' : 'incomplete'}`, testid: 'evidence-flag',
    dataset: { state: ack ? 'acknowledged' : 'incomplete' }, role: 'alert' },
  h('h3', { i18n: ack ? 'rv.evidence.acknowledged_title' : 'rv.evidence.incomplete_title' }),
  h('ul', {}, (s.evidence_issues || []).map((i) => h('li', { dataset: { reason: i.reason, party: i.party },
    text: describeIssue(i) }))),
  ack ? h('p', { class: 'small', testid: 'evidence-ack', text: t('rv.evidence.ack', { by: ack.by, reason: ack.reason }) })
    : h('p', { class: 'small', i18n: 'rv.evidence.unacknowledged' }));
}

/** Render session `id` into `container`; returns a function that stops its players. */
export async function openSession(container, id, { token, services, onBack, onSaved }) {
  const [session, recordings, timeline] = await Promise.all([
    api(`/api/v1/sessions/${id}`, { token }),
    api(`/api/v1/sessions/${id}/recordings`, { token }).catch(() => []),
    api(`/api/v1/sessions/${id}/timeline`, { token }).catch(() => []),
  ]);
  const service = services.get(session.service);
  clear(container);
  const replay = buildReplay(recordings);
  const events = withOffsets(timeline, replay ? replay.earliest : null);
  const total = replay ? replay.player.total : 0;
  const timelineView = buildTimeline(events, { total, service, onSeek: (at) => replay?.player.seek(at) });
  if (replay) replay.place(ticksFor(events, service));

  container.append(...[
    h('div', { class: 'card detail-head' },
      h('button', { type: 'button', class: 'btn btn-sm back', testid: 'back-to-list', i18n: 'rv.back', on: { click: onBack } }),
      h('h2', { id: 'detail-title', tabindex: '-1' }, `${session.customer?.name || '—'} · ${service ? localName(service) : session.service} `,
        h('span', { class: `pill state-${session.state}`, testid: 'session-state', text: t('state.' + session.state) })),
      facts(session, service)),
    evidenceFlag(session),
    replay ? replay.element : h('p', { class: 'card muted', i18n: 'rv.no_recordings' }),
    h('div', { class: 'detail-cols' },
      timelineView.element,
      h('div', { class: 'detail-side' },
        buildVerdict(session, { token, onSaved }),
        buildIntegrity(id, { token, recordings, timeline })))].filter(Boolean)); // no flag: nothing, not "null"
  container.querySelector('#detail-title').focus({ preventScroll: true });
  return () => replay?.player.destroy();
}
