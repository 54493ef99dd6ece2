// The reviewer's verdict with a comment; earlier verdicts listed. The server answers 409 until the
// session is completed or interrupted.
import { api } from '../shared/api.js';
import { clear, h } from '../shared/dom.js';
import { formatDateTime, t, tx } from '../shared/i18n.js';

const VERDICTS = [['approved', 'rv.approve', 'verdict-approve', 'btn-ok'], ['rejected', 'rv.reject', 'verdict-reject', 'btn-danger'],
  ['needs_followup', 'rv.followup', 'verdict-followup', '']];

export function buildVerdict(session, { token, onSaved }) {
  const comment = h('textarea', { id: 'verdict-comment', testid: 'verdict-comment', maxlength: '4000' });
  const status = h('p', { class: 'verdict-status', testid: 'verdict-status', role: 'status' });
  const previous = h('ul', { class: 'previous', testid: 'verdict-history' });
  const buttons = VERDICTS.map(([verdict, label, testid, tone]) =>
    h('button', { type: 'button', class: `btn ${tone}`, testid, i18n: label, on: { click: () => save(verdict) } }));

  async function loadPrevious() {
    try {
      const rows = await api(`/api/v1/sessions/${session.session_id}/reviews`, { token });
      clear(previous);
      for (const r of rows) {
        previous.append(h('li', {}, h('span', { class: `pill verdict-${r.verdict}`, text: t('rv.verdict.' + r.verdict) }),
          ' ', h('span', { class: 'small muted', text: `${r.reviewer} · ${formatDateTime(r.at)}` }),
          r.comment ? h('p', { class: 'small', text: r.comment }) : null));
      }
    } catch { /* shown empty */ }
  }

  async function save(verdict) {
    buttons.forEach((b) => { b.disabled = true; });
    status.className = 'verdict-status';
    try {
      await api(`/api/v1/sessions/${session.session_id}/review`, { method: 'POST', token,
        body: { verdict, comment: comment.value.trim() } });
      tx(status, 'rv.saved', { verdict: t('rv.verdict.' + verdict) });
      status.dataset.verdict = verdict;
      status.classList.add('ok');
      loadPrevious();
      onSaved?.(verdict);
    } catch (err) {
      status.classList.add('bad');
      if (err.status === 409) tx(status, 'rv.not_reviewable', { state: t('state.' + session.state) });
      else status.textContent = t('error.generic', { message: err.message });
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  loadPrevious();
  return h('section', { class: 'card verdict', 'aria-labelledby': 'verdict-title' },
    h('h3', { id: 'verdict-title', i18n: 'rv.verdict_title' }),
    h('div', { class: 'field' }, h('label', { for: 'verdict-comment', i18n: 'rv.comment' }), comment),
    h('div', { class: 'verdict-buttons' }, buttons), status,
    h('h4', { i18n: 'rv.previous' }), previous);
}
