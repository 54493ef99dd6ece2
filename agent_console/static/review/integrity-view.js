// Integrity: the recordings' SHA-256, the timeline hash chain, the signed manifest, and the server's
// verification (GET /api/v1/sessions/{id}/verify). Until that answers, the region says "not verified yet".
import { api } from '../shared/api.js';
import { clear, h } from '../shared/dom.js';
import { formatDateTime, t, tx } from '../shared/i18n.js';

export function buildIntegrity(sessionId, { token, recordings, timeline }) {
  const status = h('p', { class: 'verify-text', testid: 'integrity-verdict', i18n: 'rv.verify.pending' });
  const problems = h('ul', { class: 'problems' });
  const again = h('button', { type: 'button', class: 'btn btn-sm', testid: 'integrity-verify', i18n: 'rv.verify.again' });
  const manifest = h('p', { class: 'small muted' });
  const region = h('section', { class: 'card integrity', testid: 'integrity-status', dataset: { state: 'pending' },
    'aria-labelledby': 'integrity-title', 'aria-live': 'polite' },
  h('h3', { id: 'integrity-title', i18n: 'rv.integrity' }), status, problems, again,
  h('h4', { i18n: 'rv.hashes.recordings' }),
  h('dl', { class: 'hashes' }, recordings.flatMap((r) => [
    h('dt', { i18n: 'party.' + r.party }),
    h('dd', { class: 'mono', testid: `sha256-${r.party}`, text: r.sha256 || '—' })])),
  h('h4', { i18n: 'rv.hashes.timeline', args: { n: timeline.length } }),
  h('p', { class: 'mono', testid: 'timeline-head-hash', text: timeline.length ? timeline[timeline.length - 1].hash : '—' }),
  h('details', {}, h('summary', { i18n: 'rv.hashes.all' }),
    h('ol', { class: 'hash-list mono' }, timeline.map((e) => h('li', { value: String(e.seq), text: `${e.kind} ${e.hash}` })))),
  manifest);

  function setState(s) { region.dataset.state = s; }

  async function verify() {
    again.disabled = true;
    tx(status, 'rv.verify.running');
    clear(problems);
    try {
      const r = await api(`/api/v1/sessions/${sessionId}/verify`, { token });
      const ok = Boolean(r.ok);
      setState(ok ? 'ok' : 'bad');
      tx(status, ok ? (r.sealed === false ? 'rv.verify.ok_unsealed' : 'rv.verify.ok') : 'rv.verify.bad');
      for (const p of r.problems || []) problems.append(h('li', { text: typeof p === 'string' ? p : JSON.stringify(p) }));
      for (const n of r.notes || []) problems.append(h('li', { class: 'muted', text: typeof n === 'string' ? n : JSON.stringify(n) }));
    } catch {
      // no verification endpoint (or it failed): say so plainly
      setState('pending');
      tx(status, 'rv.verify.pending');
    } finally {
      again.disabled = false;
    }
  }

  async function loadManifest() {
    try {
      const m = await api(`/api/v1/sessions/${sessionId}/manifest`, { token });
      tx(manifest, 'rv.manifest', { key: m.key_id || '—', at: formatDateTime(m.sealed_at) });
    } catch { /* not sealed yet */ }
  }

  again.addEventListener('click', verify);
  verify();
  loadManifest();
  return region;
}
