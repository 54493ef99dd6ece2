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
  const segmented = []; // per party with several segments: [{tracks, gap}] (see showSegments)
  const panes = PARTIES.map(([party, label]) => {
    const recs = recordings.filter((r) => r.party === party).sort((x, y) => (x.segment || 1) - (y.segment || 1));
    const fig = h('figure', { class: 'replay-pane' }, h('figcaption', {}, h('span', { i18n: label })));
    if (!recs.length) {
      fig.append(h('div', { class: 'no-recording', testid: `replay-${party}-missing`, i18n: 'rv.no_recording' }));
      return fig;
    }
    // a call recorded across a server restart has several segments: one video each, on one clock
    const mine = recs.map((rec, i) => {
      const offset = rec.started_at_epoch - earliest;
      const video = h('video', {
        testid: i === 0 ? `replay-${party}` : `replay-${party}-${rec.segment}`, preload: 'auto', playsinline: true,
        src: rec.media_url, dataset: { offset: offset.toFixed(3), party, segment: String(rec.segment || 1) },
        'aria-label': t(label), hidden: i > 0,
      });
      fig.append(video);
      const track = { el: video, offset, duration: rec.duration_s || null };
      tracks.push(track);
      return track;
    });
    const first = mine[0].offset;
    if (first > 0.05) fig.querySelector('figcaption').append(' ', h('span', { class: 'muted small', i18n: 'rv.offset', args: { s: first.toFixed(1) } }));
    if (mine.length > 1) {
      const gap = h('div', { class: 'segment-gap', testid: `replay-${party}-gap`, i18n: 'rv.segment_gap', hidden: true });
      fig.append(gap);
      segmented.push({ tracks: mine, gap });
    }
    return fig;
  });

  /** Each party shows the segment playing at ``now``; between two, the earlier one's last frame and a note. */
  function showSegments(now) {
    for (const { tracks: mine, gap } of segmented) {
      let shown = mine[0];
      for (const tr of mine) if (tr.offset <= now + 0.05) shown = tr;
      for (const tr of mine) tr.el.hidden = tr !== shown;
      gap.hidden = !(now >= shown.offset + (shown.duration || Infinity) && shown !== mine[mine.length - 1]);
    }
  }

  const play = h('button', { type: 'button', class: 'btn btn-primary', testid: 'replay-play', i18n: 'rv.play' });
  const time = h('span', { class: 'replay-time mono', testid: 'replay-time', 'aria-live': 'off', text: '0:00 / 0:00' });
  const seek = h('input', { type: 'range', min: '0', max: '0', step: '0.1', value: '0', class: 'seek',
    testid: 'replay-seek', 'aria-label': t('rv.seek'), 'data-i18n-aria-label': 'rv.seek' });
  const ticks = h('div', { class: 'ticks', 'aria-hidden': 'true' });
  let dragging = false;
  const player = new SyncPlayer(tracks, {
    onTime: (now, total) => {
      showSegments(now);
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
