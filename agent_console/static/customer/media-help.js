// What to tell a customer whose camera cannot start, by error kind, with steps that fit where the page runs.
import { h, clear } from '../shared/dom.js';
import { tx } from '../shared/i18n.js';

const ua = navigator.userAgent || '';
export const inWeChat = /MicroMessenger/i.test(ua);
export const inMiniProgram = /miniProgram/i.test(ua) || window.__wxjs_environment === 'miniprogram';

function stepsFor(kind) {
  switch (kind) {
    case 'denied': {
      const steps = ['media.denied.browser', 'media.denied.app'];
      steps.unshift('media.denied.wechat');
      if (!inWeChat) steps.push(steps.shift()); // the WeChat step last outside WeChat
      return [...steps, 'media.retry_step'];
    }
    case 'no_device': return ['media.no_device.step1', 'media.no_device.step2', 'media.retry_step'];
    case 'in_use': return ['media.in_use.step1', 'media.retry_step'];
    case 'insecure': return ['media.insecure.step1'];
    case 'unsupported': return ['media.unsupported.step1'];
    default: return ['media.other.step1', 'media.retry_step'];
  }
}

/** Fill the media-error region for `kind` (denied, no_device, in_use, insecure, unsupported, other). */
export function showMediaHelp(region, kind) {
  region.dataset.kind = kind;
  tx(region.querySelector('#media-error-title'), `media.${kind}.title`);
  const list = clear(region.querySelector('#media-error-steps'));
  for (const key of stepsFor(kind)) list.append(h('li', { i18n: key }));
  list.append(h('li', { class: 'muted', i18n: 'media.fallback' }));
  region.querySelector('#media-retry').hidden = kind === 'insecure' || kind === 'unsupported';
  region.hidden = false;
}
