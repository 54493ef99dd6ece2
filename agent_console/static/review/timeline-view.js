// The session's timeline: events at their offset into the replay; those inside the recordings
// are markers that seek both videos. Media housekeeping events are hidden unless asked for.
import { clear, h } from '../shared/dom.js';
import { formatClock, formatDateTime, localName, t } from '../shared/i18n.js';

const GROUPS = [['state.', 'state'], ['facecheck.', 'facecheck'], ['checklist.', 'checklist'], ['consent', 'consent'],
  ['media.', 'media'], ['recording.', 'evidence'], ['evidence.', 'evidence']];

function groupOf(kind) {
  const g = GROUPS.find(([prefix]) => kind.startsWith(prefix));
  return g ? g[1] : 'other';
}

function tr(key, fallback, args) { return t(key, args) !== key ? t(key, args) : fallback; }

export function labelOf(e, service) {
  const d = e.data || {};
  if (e.kind.startsWith('state.')) return t('ev.state', { state: tr('state.' + e.kind.slice(6), e.kind.slice(6)) });
  switch (e.kind) {
    case 'checklist.mark': {
      const step = (service?.checklist || []).find((s) => s.code === d.step);
      return t('ev.checklist.mark', { step: step ? localName(step) : d.step });
    }
    case 'facecheck.challenge': return t('ev.facecheck.challenge', { action: tr('act.' + d.action, d.action) });
    case 'facecheck.result': {
      const live = d.liveness && d.liveness.passed;
      return t('ev.facecheck.result', { result: `${t(d.match ? 'fcr.match' : 'fcr.mismatch')} · ${t(live ? 'fcr.live' : 'fcr.not_live')}` });
    }
    case 'recording.finalised':
    case 'media.party_connected':
    case 'media.party_disconnected':
      return t('ev.' + e.kind, { party: tr('party.' + d.party, d.party || '') });
    default: return tr('ev.' + e.kind, e.kind);
  }
}

/** Offsets of the events (seconds after `earliest`; null without recordings). */
export function withOffsets(timeline, earliest) {
  return timeline.map((e) => ({ ...e, offset: earliest == null ? null : Date.parse(e.at) / 1000 - earliest }));
}

export function buildTimeline(events, { total, service, onSeek }) {
  const list = h('ol', { class: 'timeline', testid: 'timeline' });
  const showMedia = h('input', { type: 'checkbox', id: 'show-media', testid: 'timeline-show-media' });
  function render() {
    clear(list);
    for (const e of events) {
      const group = groupOf(e.kind);
      if (group === 'media' && !showMedia.checked) continue;
      const inside = e.offset != null && e.offset >= 0 && e.offset <= total + 0.5;
      const when = e.offset == null ? formatDateTime(e.at)
        : inside ? formatClock(e.offset) : t(e.offset < 0 ? 'rv.before_recording' : 'rv.after_recording');
      const body = [h('span', { class: 'ev-time mono', text: when }), h('span', { class: 'ev-label', text: labelOf(e, service) }),
        h('span', { class: 'ev-actor muted small', text: e.actor })];
      const item = inside
        ? h('button', { type: 'button', class: `ev ev-${group}`, testid: 'timeline-marker', title: formatDateTime(e.at),
          dataset: { offset: e.offset.toFixed(3), kind: e.kind, seq: String(e.seq) }, on: { click: () => onSeek(e.offset) } }, body)
        : h('div', { class: `ev ev-${group} ev-outside`, title: formatDateTime(e.at), dataset: { kind: e.kind } }, body);
      list.append(h('li', {}, item));
    }
  }
  showMedia.addEventListener('change', render);
  render();
  const element = h('section', { class: 'card', 'aria-labelledby': 'timeline-title' },
    h('div', { class: 'section-head' }, h('h3', { id: 'timeline-title', i18n: 'rv.timeline' }),
      h('label', { class: 'check small', for: 'show-media' }, showMedia, h('span', { i18n: 'rv.show_media' }))),
    list);
  return { element, render };
}

export function ticksFor(events, service) {
  return events.filter((e) => e.offset != null && e.offset >= 0 && groupOf(e.kind) !== 'media')
    .map((e) => ({ offset: e.offset, label: labelOf(e, service), group: groupOf(e.kind) }));
}
