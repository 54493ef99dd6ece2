// The face-check result panel: identity match, distance vs threshold, liveness per challenge, reasons.
import { clear, h } from '../shared/dom.js';
import { t } from '../shared/i18n.js';

function known(prefix, key) {
  const full = prefix + key;
  return t(full) !== full ? t(full) : key;
}

export function renderFaceCheck(panel, r) {
  clear(panel);
  const live = Boolean(r.liveness && r.liveness.passed);
  panel.dataset.match = String(Boolean(r.match));
  panel.dataset.liveness = String(live);
  panel.append(
    h('p', { class: 'fc-verdict' },
      h('span', { class: 'pill ' + (r.match ? 'pill-ok' : 'pill-bad'), testid: 'facecheck-match',
        text: t(r.match ? 'fc.match_yes' : 'fc.match_no') }),
      ' ',
      h('span', { class: 'pill ' + (live ? 'pill-ok' : 'pill-bad'), testid: 'facecheck-liveness',
        text: t(live ? 'fc.live_yes' : 'fc.live_no') })),
    h('dl', { class: 'facts' },
      h('dt', { text: t('fc.distance') }),
      h('dd', { class: 'mono', testid: 'facecheck-distance', text: r.distance == null ? '—' : Number(r.distance).toFixed(3) }),
      h('dt', { text: t('fc.threshold') }),
      h('dd', { class: 'mono', text: r.threshold == null ? '—' : String(r.threshold) })),
  );
  const challenges = (r.liveness && r.liveness.challenges) || [];
  if (challenges.length) {
    panel.append(h('table', { class: 'fc-table' },
      h('caption', { text: t('fc.challenges') }),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col', text: t('fc.action') }),
        h('th', { scope: 'col', text: t('fc.outcome') }), h('th', { scope: 'col', text: t('fc.reason') }))),
      h('tbody', {}, challenges.map((c) => h('tr', { dataset: { action: c.action, passed: String(c.passed) } },
        h('td', { text: known('fc.action.', c.action) }),
        h('td', {}, h('span', { class: 'pill ' + (c.passed ? 'pill-ok' : 'pill-bad'), text: t(c.passed ? 'fc.passed' : 'fc.failed') })),
        h('td', { text: known('fc.why.', c.reason || '') }))))));
  }
  const reasons = r.reasons || [];
  if (reasons.length) {
    panel.append(h('p', { class: 'label', text: t('fc.reasons') }),
      h('ul', { class: 'fc-reasons', testid: 'facecheck-reasons' },
        reasons.map((code) => h('li', { dataset: { code }, text: known('fc.reason.', code) }))));
  }
  panel.hidden = false;
}
