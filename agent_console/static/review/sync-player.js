// Plays two recordings side by side on one clock. Each video has an offset: its recording started
// that many seconds after the earliest one. Time T runs from 0 (earliest start) to the latest end;
// a video shows T - offset, is held at its first frame before it starts and paused after it ends.

const SEEK_DRIFT_S = 0.5;
const NUDGE_DRIFT_S = 0.04;
const TICK_MS = 100;

export class SyncPlayer {
  /** tracks: [{el: HTMLVideoElement, offset: s, duration: s|null}] */
  constructor(tracks, { onTime, onState } = {}) {
    this.tracks = tracks;
    this.onTime = onTime;
    this.onState = onState;
    this.playing = false;
    this.t = 0;
    this.wall = performance.now();
    this.timer = setInterval(() => this.tick(), TICK_MS);
    for (const tr of tracks) {
      tr.el.addEventListener('loadedmetadata', () => {
        if (!tr.duration && Number.isFinite(tr.el.duration)) tr.duration = tr.el.duration;
        this.onTime?.(this.t, this.total);
      });
    }
  }

  get total() {
    return Math.max(0, ...this.tracks.map((tr) => tr.offset + (tr.duration || 0)));
  }

  _inRange(tr, t) { return t >= tr.offset && t < tr.offset + (tr.duration || Infinity); }

  /** The shared time: taken from a playing video when there is one (it may stall to buffer). */
  now() {
    if (!this.playing) return this.t;
    const master = this.tracks.find((tr) => this._inRange(tr, this.t) && !tr.el.paused && tr.el.readyState >= 3);
    if (master) return master.el.currentTime + master.offset;
    return this.t + (performance.now() - this.wall) / 1000;
  }

  tick() {
    const t = Math.min(this.now(), this.total || Infinity);
    this.t = t;
    this.wall = performance.now();
    for (const tr of this.tracks) this._follow(tr, t, false);
    if (this.playing && this.total && t >= this.total - 0.05) this.pause();
    this.onTime?.(this.t, this.total);
  }

  _follow(tr, t, exact) {
    const v = tr.el;
    const local = t - tr.offset;
    const end = tr.duration || (Number.isFinite(v.duration) ? v.duration : Infinity);
    if (local < 0 || local >= end) {
      if (!v.paused) v.pause();
      const hold = local < 0 ? 0 : Math.max(0, end - 0.05);
      if (Math.abs(v.currentTime - hold) > 0.05 && v.readyState >= 1) v.currentTime = hold;
      return;
    }
    const drift = v.currentTime - local;
    if (exact || Math.abs(drift) > SEEK_DRIFT_S) {
      if (v.readyState >= 1) v.currentTime = local;
      v.playbackRate = 1;
    } else {
      // small drift: catch up or fall back gently instead of seeking (a seek stalls the video)
      v.playbackRate = Math.abs(drift) > NUDGE_DRIFT_S ? (drift > 0 ? 0.9 : 1.1) : 1;
    }
    if (this.playing && v.paused) v.play().catch(() => {});
    if (!this.playing && !v.paused) v.pause();
  }

  play() {
    if (this.total && this.t >= this.total - 0.05) this.t = 0;
    this.playing = true;
    this.wall = performance.now();
    for (const tr of this.tracks) this._follow(tr, this.t, true);
    this.onState?.(true);
  }

  pause() {
    this.t = this.now();
    this.playing = false;
    for (const tr of this.tracks) tr.el.pause();
    this.onState?.(false);
  }

  toggle() { if (this.playing) this.pause(); else this.play(); }

  seek(t) {
    this.t = Math.max(0, Math.min(t, this.total || t));
    this.wall = performance.now();
    for (const tr of this.tracks) this._follow(tr, this.t, true);
    this.onTime?.(this.t, this.total);
  }

  destroy() {
    clearInterval(this.timer);
    for (const tr of this.tracks) { tr.el.pause(); tr.el.removeAttribute('src'); tr.el.load(); }
  }
}
