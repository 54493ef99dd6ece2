// i18n: string tables per language, t(), and live re-translation of marked elements.
// Elements carry data-i18n="key" (and data-i18n-args='{"n":1}'); attributes use
// data-i18n-placeholder / data-i18n-aria-label / data-i18n-title.

export const LANGS = ['zh-CN', 'en'];
const STORE_KEY = 'vbranch.lang';
const tables = { 'zh-CN': {}, en: {} };
const listeners = new Set();
let current = initialLang();

function initialLang() {
  const fromQuery = new URLSearchParams(location.search).get('lang');
  let saved = null;
  try { saved = localStorage.getItem(STORE_KEY); } catch { /* storage may be off */ }
  const pick = fromQuery || saved;
  if (pick && pick.toLowerCase().startsWith('en')) return 'en';
  return 'zh-CN';
}

export function addStrings(byLang) {
  for (const [code, strings] of Object.entries(byLang)) Object.assign(tables[code] ||= {}, strings);
}

export function lang() { return current; }

export function t(key, args = {}) {
  const s = tables[current][key] ?? tables['zh-CN'][key] ?? key;
  return String(s).replace(/\{(\w+)\}/g, (m, k) => (args[k] ?? m));
}

/** Set an element's text from a key and remember the key so a language switch updates it. */
export function tx(el, key, args) {
  el.dataset.i18n = key;
  if (args) el.dataset.i18nArgs = JSON.stringify(args); else delete el.dataset.i18nArgs;
  el.textContent = t(key, args || {});
  return el;
}

const ATTRS = [['i18nPlaceholder', 'placeholder'], ['i18nAriaLabel', 'aria-label'], ['i18nTitle', 'title']];

export function applyI18n(root = document) {
  for (const el of root.querySelectorAll('[data-i18n]')) {
    const args = el.dataset.i18nArgs ? JSON.parse(el.dataset.i18nArgs) : {};
    el.textContent = t(el.dataset.i18n, args);
  }
  for (const [data, attr] of ATTRS) {
    const sel = '[data-' + data.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase()) + ']';
    for (const el of root.querySelectorAll(sel)) el.setAttribute(attr, t(el.dataset[data]));
  }
  document.documentElement.lang = current;
}

export function setLang(code) {
  current = LANGS.includes(code) ? code : 'zh-CN';
  try { localStorage.setItem(STORE_KEY, current); } catch { /* ignore */ }
  applyI18n(document);
  for (const fn of listeners) fn(current);
}

export function onLangChange(fn) { listeners.add(fn); return () => listeners.delete(fn); }

/** A name from the API in the current language: obj.name_en / obj.name_zh, else obj.name. */
export function localName(obj, field = 'name') {
  if (!obj) return '';
  const v = current === 'en' ? obj[field + '_en'] : obj[field + '_zh'];
  return v || obj[field] || obj.code || '';
}

/** A button that switches between Chinese and English; it names the language it switches to. */
export function bindLangToggle(button) {
  const render = () => {
    const other = current === 'en' ? 'zh-CN' : 'en';
    button.textContent = other === 'en' ? 'English' : '中文';
    button.setAttribute('lang', other);
    button.setAttribute('aria-label', other === 'en' ? 'Switch to English' : '切换到中文');
  };
  button.addEventListener('click', () => setLang(current === 'en' ? 'zh-CN' : 'en'));
  onLangChange(render);
  render();
}

/** "1:05" style durations, with units in words for screen readers via t('dur.*'). */
export function formatDuration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return '—';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  if (h) return t('dur.hms', { h, m: String(m).padStart(2, '0'), s: String(r).padStart(2, '0') });
  if (m) return t('dur.ms', { m, s: String(r).padStart(2, '0') });
  return t('dur.s', { s: r });
}

export function formatClock(seconds) {
  const s = Math.max(0, Math.floor(seconds || 0));
  const m = Math.floor(s / 60), r = s % 60;
  return `${m}:${String(r).padStart(2, '0')}`;
}

export function formatTime(value) {
  const d = typeof value === 'number' ? new Date(value) : new Date(value);
  if (Number.isNaN(d.getTime())) return '';
  return d.toLocaleTimeString(current === 'en' ? 'en-GB' : 'zh-CN', { hour12: false });
}

export function formatDateTime(value) {
  if (value == null) return '—';
  const d = typeof value === 'number' ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return d.toLocaleString(current === 'en' ? 'en-GB' : 'zh-CN', { hour12: false });
}
