// Demo mode without a join token: pick a service and create the session from the page itself
// (the server allows POST /api/v1/sessions without an API key only in --demo).
import { api } from '../shared/api.js';
import { h, clear } from '../shared/dom.js';
import { localName, onLangChange, t } from '../shared/i18n.js';

export async function setUpDemoForm(form) {
  const select = form.querySelector('#demo-service');
  const services = await api('/api/v1/services');
  const render = () => {
    const chosen = select.value;
    clear(select);
    for (const s of services) select.append(h('option', { value: s.code, text: localName(s) }));
    if (chosen) select.value = chosen;
  };
  render();
  onLangChange(render);
  form.querySelector('#demo-name').placeholder = t('demo.name_default');
  form.hidden = false;
}

/** A JPEG data URL of the current preview frame (the demo's reference photo). */
export function snapshot(video) {
  if (!video.videoWidth) return null;
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext('2d').drawImage(video, 0, 0);
  return canvas.toDataURL('image/jpeg', 0.9);
}

function channel() {
  const ua = navigator.userAgent || '';
  if (/miniProgram/i.test(ua) || window.__wxjs_environment === 'miniprogram') return 'miniprogram';
  return /Mobi|Android|iPhone/i.test(ua) ? 'h5' : 'web';
}

/** Create a session; returns {session_id, join_token, photoRefused}. */
export async function createDemoSession(form, video) {
  const service = form.querySelector('#demo-service').value;
  const name = form.querySelector('#demo-name').value.trim() || t('demo.name_default');
  const ref = 'DEMO-' + Math.random().toString(36).slice(2, 10).toUpperCase();
  const body = { service, channel: channel(), customer: { ref, name } };
  const photo = form.querySelector('#demo-photo').checked ? snapshot(video) : null;
  if (photo) {
    try {
      return await api('/api/v1/sessions', { method: 'POST', body: { ...body, reference_photo: photo } });
    } catch (err) {
      if (err.status !== 422 && err.status !== 413) throw err;
      const created = await api('/api/v1/sessions', { method: 'POST', body });
      return { ...created, photoRefused: true };
    }
  }
  return api('/api/v1/sessions', { method: 'POST', body });
}
