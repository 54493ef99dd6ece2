// The service's checklist. Manual steps are toggles that send checklist.mark; a `facecheck` step
// is done by a face check that matched and passed liveness and cannot be marked by hand.
import { clear, h } from '../shared/dom.js';
import { formatTime, localName, t } from '../shared/i18n.js';

/** Whether a step is done: manual steps by marking (marked: Map code -> epoch ms), face-check steps by a pass. */
export function isDone(step, marked, facecheckPassed) {
  return step.kind === 'facecheck' ? Boolean(facecheckPassed) : marked.has(step.code);
}

/**
 * steps: [{code, name_zh, name_en, mandatory, kind}]; onMark(code) -> Promise (rejects to leave it unmarked).
 */
export function renderChecklist(list, steps, marked, facecheckPassed, onMark) {
  clear(list);
  for (const step of steps) {
    const done = isDone(step, marked, facecheckPassed);
    const auto = step.kind === 'facecheck';
    let when = t('checklist.mark');
    if (auto) when = t(done ? 'checklist.auto_done' : 'checklist.auto');
    else if (done) when = t('checklist.done_at', { time: formatTime(marked.get(step.code)) });
    const button = h('button', {
      type: 'button', class: 'step-toggle' + (auto ? ' step-auto' : ''), testid: `checklist-step-${step.code}`,
      'aria-pressed': String(done), disabled: done || auto, dataset: { step: step.code, kind: step.kind || 'manual', done: String(done) },
    },
    h('span', { class: 'step-box', 'aria-hidden': 'true', text: done ? '✓' : '' }),
    h('span', { class: 'step-name' }, localName(step),
      step.mandatory ? h('span', { class: 'pill pill-warn step-req', text: t('checklist.mandatory') })
        : h('span', { class: 'pill step-req', text: t('checklist.optional') })),
    h('span', { class: 'step-when small muted', text: when }));
    if (!auto) {
      button.addEventListener('click', async () => {
        button.disabled = true;
        try { await onMark(step.code); } catch { button.disabled = false; }
      });
    }
    list.append(h('li', { class: done ? 'done' : '' }, button));
  }
}

export function missingMandatory(steps, marked, facecheckPassed) {
  return steps.filter((s) => s.mandatory && !isDone(s, marked, facecheckPassed));
}
