// REST calls: JSON in and out, typed errors ({error: {code, message}}), optional bearer token.
import { lang } from './i18n.js';

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

export async function api(path, { method = 'GET', body, token, headers = {} } = {}) {
  const h = { Accept: 'application/json', 'Accept-Language': lang() === 'en' ? 'en' : 'zh-CN', ...headers };
  if (body !== undefined) h['Content-Type'] = 'application/json';
  if (token) h.Authorization = 'Bearer ' + token;
  let res;
  try {
    res = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, 'network', e.message);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!res.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(res.status, err.code || 'http_' + res.status, err.message || res.statusText, err.details);
  }
  return data;
}

export async function clientConfig() {
  try {
    return await api('/api/v1/client-config');
  } catch {
    return { demo: false, version: '?', resume_window_s: 60 };
  }
}
