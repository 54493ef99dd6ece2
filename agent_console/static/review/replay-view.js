// The side-by-side replay: the customer's and the agent's recordings, one transport bar with
// timeline ticks, kept in sync by SyncPlayer. Offsets come from each recording's wall-clock start.
import { h } from '../shared/dom.js';
import { formatClock, t } from '../shared/i18n.js';
import { SyncPlayer } from './sync-player.js';

const PARTIES = [['customer', 'rv.customer_side'], ['agent', 'rv.agent_side']];

/** recordings: the API's list. Returns {element, player, earliest, place(ticks)} or null without recordings. */
export function buildReplay(recordings) {
  if (!recordings.length) return null;
  const earliest = Math.min(...recordings.map((r) => r.started_at_epoch));
  const tracks = [];
  const panes = PARTIES.map(([party, label]) => {
    const rec = recordings.find((r) => r.party === party);
    const fig = h('figure', { class: 'replay-pane' }, h('figcaption', {}, h('span', { i18n: label })));
    if (!rec) {
      fig.append(h('div', { class: 'no-recording', testid: `replay-${party}-missing`, i18n: 'rv.no_recording' }));
      return fig;
    }
    const offset = rec.started_at_epoch - earliest;
    const video = h('video', {
      testid: `replay-${party}`, preload: 'auto', playsinline: true, src: rec.media_url,
      dataset: { offset: offset.toFixed(3), party }, 'aria-label': t(label),
    });
    if (offset > 0.05) fig.querySelector('figcaption').append(' ', h('span', { class: 'muted small', i18n: 'rv.offset', args: { s: offset.toFixed(1) } }));
    fig.append(video);
    tracks.push({ el: video, offset, duration: rec.duration_s || null });
    return fig;
  });

  const play = h('button', { type: 'button', class: 'btn btn-primary', testid: 'replay-play', i18n: 'rv.play' });
  const time = h('span', { class: 'replay-time mono', testid: 'replay-time', 'aria-live': 'off', text: '0:00 / 0:00' });
  const seek = h('input', { type: 'range', min: '0', max: '0', step: '0.1', value: '0', class: 'seek',
    testid: 'replay-seek', 'aria-label': t('rv.seek'), 'data-i18n-aria-label': 'rv.seek' });
  const ticks = h('div', { class: 'ticks', 'aria-hidden': 'true' });
  let dragging = false;
  const player = new SyncPlayer(tracks, {
    onTime: (now, total) => {
      time.textContent = `${formatClock(now)} / ${formatClock(total)}`;
      if (Number(seek.max) !== Number(total.toFixed(1))) { seek.max = total.toFixed(1); layoutTicks(); }
      if (!dragging) seek.value = now.toFixed(1);
      seek.setAttribute('aria-valuetext', formatClock(now));
    },
    onState: (playing) => {
      play.dataset.i18n = playing ? 'rv.pause' : 'rv.play';
      play.textContent = t(play.dataset.i18n);
      play.setAttribute('aria-pressed', String(playing));
    },
  });
  play.addEventListener('click', () => player.toggle());
  seek.addEventListener('input', () => { dragging = true; player.seek(Number(seek.value)); });
  seek.addEventListener('change', () => { dragging = false; });

  let tickList = [];
  function layoutTicks() {
    const total = player.total;
    ticks.replaceChildren(...tickList.filter((tk) => total && tk.offset <= total).map((tk) => {
      const mark = h('span', { class: `tick tick-${tk.group}`, title: tk.label, style: `left:${(tk.offset / total) * 100}%` });
      mark.addEventListener('click', () => player.seek(tk.offset));
      return mark;
    }));
  }

  const element = h('section', { class: 'card replay', 'aria-labelledby': 'replay-title' },
    h('h3', { id: 'replay-title', i18n: 'rv.replay' }),
    h('div', { class: 'replay-panes' }, panes),
    h('div', { class: 'transport' }, play, h('div', { class: 'scrub' }, seek, ticks), time));
  return {
    element, player, earliest,
    /** ticks: [{offset, label, group}] drawn on the seek bar */
    place(list) { tickList = list; layoutTicks(); },
  };
}
