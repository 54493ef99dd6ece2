// Small DOM helpers: element builder, show/hide, countdowns, a status banner.
import { t, tx } from './i18n.js';

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

const PROPS = new Set(['hidden', 'disabled', 'checked', 'value', 'selected', 'muted', 'autoplay', 'playsInline']);

/**
 * h('button', {class: 'btn', testid: 'join', i18n: 'cust.join', on: {click}}, ...children)
 * `i18n` sets translated text (kept in step with language switches); `args` its parameters.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false && !PROPS.has(k)) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'i18n') tx(el, v, attrs.args);
    else if (k === 'args') continue;
    else if (k === 'testid') el.dataset.testid = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (PROPS.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

export function show(el, on = true) { if (el) el.hidden = !on; return el; }
export function clear(el) { while (el.firstChild) el.firstChild.remove(); return el; }

/** Calls onTick(secondsLeft) every 250 ms until `deadlineMs` (Date.now() clock), then onDone(). */
export function countdown(deadlineMs, onTick, onDone) {
  let timer = null;
  const step = () => {
    const left = Math.max(0, (deadlineMs - Date.now()) / 1000);
    onTick(left);
    if (left <= 0) { clearInterval(timer); timer = null; onDone?.(); }
  };
  timer = setInterval(step, 250);
  step();
  return () => { if (timer) clearInterval(timer); timer = null; };
}

/** A status banner (role=status): banner.say(key, args, kind) / banner.hide(). */
export function banner(el) {
  let hideTimer = null;
  return {
    say(key, args, kind = 'info', autoHideMs = 0) {
      clearTimeout(hideTimer);
      tx(el, key, args);
      el.className = 'banner banner-' + kind;
      el.hidden = false;
      if (autoHideMs) hideTimer = setTimeout(() => { el.hidden = true; }, autoHideMs);
    },
    hide() { clearTimeout(hideTimer); el.hidden = true; },
  };
}

/** Try to play a media element; if autoplay with sound is refused, play muted and offer an unmute button. */
export async function playWithSound(video, unmuteButton) {
  try {
    await video.play();
  } catch (e) {
    if (e && e.name === 'NotAllowedError') {
      video.muted = true;
      try { await video.play(); } catch { /* nothing more to do */ }
      if (unmuteButton) {
        unmuteButton.hidden = false;
        unmuteButton.onclick = () => { video.muted = false; unmuteButton.hidden = true; video.play().catch(() => {}); };
      }
    }
  }
}

export function errorText(err) {
  if (!err) return '';
  if (err.code && t('err.' + err.code) !== 'err.' + err.code) return t('err.' + err.code);
  return err.message || String(err);
}
