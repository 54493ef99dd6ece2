// The WebSocket client: hello/welcome, request -> reply by id/ref, typed handlers,
// keep-alive pings, and automatic reconnect with the resume token inside the resume window.

export class WsError extends Error {
  constructor(code, message, msg) {
    super(message || code);
    this.code = code;
    this.msg = msg;
  }
}

// Close codes after which reconnecting makes no sense: normal, policy (bad token), superseded.
const FINAL_CODES = new Set([1000, 1008, 4001]);
const CLOSE_RESTART = 1012; // the server is restarting: come back in a moment
const PING_EVERY_MS = 15000;
const PING_TIMEOUT_MS = 8000;
const PROBE_TIMEOUT_MS = 2500;

export class Signal {
  /**
   * @param {object} o
   * @param {string} o.token join or staff token
   * @param {{get(): string|null, set(v: string): void, clear(): void}} o.resume where the resume token lives
   * @param {number} [o.resumeWindowS] give up reconnecting after this long
   */
  constructor({ token, resume, resumeWindowS = 60 }) {
    this.token = token;
    this.resume = resume;
    this.resumeWindowS = resumeWindowS;
    this.handlers = new Map();
    this.pending = new Map();
    this.nextId = 1;
    this.ws = null;
    this.state = 'idle'; // idle | connecting | connected | reconnecting | closed | lost
    this.closing = false;
    this.dropAt = 0;
    this.dropCode = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    // back online, or back in the foreground (a phone may drop sockets of a page in the background)
    this.onOnline = () => { if (this.state === 'reconnecting') this._retryNow(); };
    this.onVisible = () => { if (document.visibilityState === 'visible') this.onOnline(); };
    window.addEventListener('online', this.onOnline);
    document.addEventListener('visibilitychange', this.onVisible);
  }

  /** on('queue.update', fn); on('*', fn) sees every message; status events: on('status', fn(state, info)). */
  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, new Set());
    this.handlers.get(type).add(fn);
    return () => this.handlers.get(type).delete(fn);
  }

  _emit(type, ...args) {
    for (const fn of this.handlers.get(type) || []) {
      try { fn(...args); } catch (e) { console.error('handler for', type, 'failed', e); }
    }
  }

  _setState(state, info = {}) {
    this.state = state;
    this._emit('status', state, info);
  }

  get url() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${proto}//${location.host}/ws?token=${encodeURIComponent(this.token)}`;
  }

  /** Connect and greet; resolves with the welcome message (rejects with WsError). */
  async open() {
    this.closing = false;
    this._setState('connecting');
    const welcome = await this._connect(false);
    this._setState('connected', { welcome, resumed: false });
    return welcome;
  }

  _connect(isRetry) {
    return new Promise((resolve, reject) => {
      let greeted = false;
      const ws = new WebSocket(this.url);
      this.ws = ws;
      ws.onopen = async () => {
        try {
          const welcome = await this._hello();
          greeted = true;
          this._startPings();
          resolve(welcome);
        } catch (err) {
          reject(err);
          if (!isRetry) { this.closing = true; ws.close(1000); }
        }
      };
      ws.onmessage = (ev) => this._onMessage(ev);
      ws.onclose = (ev) => {
        if (this.ws === ws) this._onClose(ev, greeted);
        if (!greeted) reject(new WsError(ev.code === 1008 ? (ev.reason || 'invalid_token') : 'disconnected',
          ev.reason || 'the connection closed'));
      };
    });
  }

  async _hello() {
    const stored = this.resume?.get();
    try {
      const welcome = await this.request(stored ? { type: 'hello', resume_token: stored } : { type: 'hello' });
      if (welcome.resume_token) this.resume?.set(welcome.resume_token);
      return welcome;
    } catch (err) {
      if (stored && err.code === 'resume_failed') {
        // the resume window passed or the token is from an earlier page: greet afresh with the join
        // or staff token; the server says whether the session is still live (session_closed if not)
        this.resume.clear();
        const welcome = await this.request({ type: 'hello' });
        if (welcome.resume_token) this.resume?.set(welcome.resume_token);
        return welcome;
      }
      throw err;
    }
  }

  _onMessage(ev) {
    let msg;
    try { msg = JSON.parse(ev.data); } catch { return; }
    if (msg.ref != null && this.pending.has(msg.ref)) {
      const p = this.pending.get(msg.ref);
      this.pending.delete(msg.ref);
      clearTimeout(p.timer);
      if (msg.type === 'error') p.reject(new WsError(msg.code, msg.message, msg));
      else p.resolve(msg);
      if (msg.type === 'error' || msg.type === 'ack' || msg.type === 'pong') return;
    }
    this._emit('*', msg);
    this._emit(msg.type, msg);
  }

  _onClose(ev, greeted) {
    this._stopPings();
    for (const p of this.pending.values()) { clearTimeout(p.timer); p.reject(new WsError('disconnected', 'connection closed')); }
    this.pending.clear();
    if (this.closing || FINAL_CODES.has(ev.code)) {
      if (this.state !== 'lost') this._setState('closed', { code: ev.code, reason: ev.reason });
      this._cleanup();
      return;
    }
    if (this.state === 'connecting' && !greeted) return; // open() reports it
    if (this.state !== 'reconnecting') {
      this.dropAt = Date.now();
      this.attempt = 0;
      this.dropCode = ev.code; // 1012: the server is restarting (the page can say so)
    }
    this._scheduleRetry();
  }

  _scheduleRetry() {
    const elapsed = (Date.now() - this.dropAt) / 1000;
    if (elapsed > this.resumeWindowS) {
      this._setState('lost', { code: 'resume_window_passed' });
      this._cleanup();
      return;
    }
    this.attempt += 1;
    this._setState('reconnecting', { attempt: this.attempt, restarting: this.dropCode === CLOSE_RESTART });
    const delay = Math.min(5000, 500 * 2 ** (this.attempt - 1));
    this.retryTimer = setTimeout(() => this._retryNow(), delay);
  }

  async _retryNow() {
    clearTimeout(this.retryTimer);
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) return; // an attempt is under way
    try {
      const welcome = await this._connect(true);
      this._setState('connected', { welcome, resumed: true });
      this._emit('resumed', welcome);
    } catch (err) {
      if (['session_closed', 'not_found', 'invalid_token', 'token_expired'].includes(err.code)) {
        this.closing = true;
        this._setState('lost', { code: err.code });
        try { this.ws.close(1000); } catch { /* already closed */ }
        this._cleanup();
      }
      // otherwise onclose schedules the next attempt
    }
  }

  _startPings() {
    this._stopPings();
    this.pingTimer = setInterval(async () => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
      try {
        await this.request({ type: 'ping' }, PING_TIMEOUT_MS);
      } catch (err) {
        if (err.code === 'timeout' && this.ws) this._dropDeadSocket();
      }
    }, PING_EVERY_MS);
  }

  /**
   * Is the socket still alive? Asked when something suggests the network changed (the media went
   * away): a quick ping, and a socket that does not answer is dropped at once and reconnected,
   * rather than found dead by the next scheduled ping, up to 23 s later.
   */
  async probe(timeoutMs = PROBE_TIMEOUT_MS) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || this.probing) return;
    this.probing = true;
    const ws = this.ws;
    try {
      await this.request({ type: 'ping' }, timeoutMs);
    } catch (err) {
      if (err.code === 'timeout' && this.ws === ws) this._dropDeadSocket();
    } finally {
      this.probing = false;
    }
  }

  /** A socket that stopped answering: forget it now (its close event may come much later) and reconnect. */
  _dropDeadSocket() {
    const ws = this.ws;
    ws.onclose = null;
    ws.onmessage = null;
    try { ws.close(4000, 'ping timeout'); } catch { /* already closing */ }
    this._onClose({ code: 4000, reason: 'ping timeout' }, true);
  }

  _stopPings() { clearInterval(this.pingTimer); this.pingTimer = null; }

  _cleanup() {
    clearTimeout(this.retryTimer);
    this._stopPings();
    window.removeEventListener('online', this.onOnline);
    document.removeEventListener('visibilitychange', this.onVisible);
  }

  /** Send without waiting for a reply. */
  send(msg) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  /** Send with an id and resolve with the reply that refs it; an error reply rejects with WsError. */
  request(msg, timeoutMs = 15000) {
    return new Promise((resolve, reject) => {
      if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
        reject(new WsError('disconnected', 'not connected'));
        return;
      }
      const id = 'c' + this.nextId++;
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new WsError('timeout', 'no reply from the server'));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.ws.send(JSON.stringify({ ...msg, id }));
    });
  }

  /** Close for good (no reconnect). */
  close(code = 1000) {
    this.closing = true;
    this._cleanup();
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(code);
  }
}

/** A resume-token store in sessionStorage (survives a reload of this tab, not a new tab). */
export function sessionStore(key) {
  return {
    get() { try { return sessionStorage.getItem(key); } catch { return null; } },
    set(v) { try { sessionStorage.setItem(key, v); } catch { /* ignore */ } },
    clear() { try { sessionStorage.removeItem(key); } catch { /* ignore */ } },
  };
}
