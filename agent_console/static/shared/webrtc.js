// Camera/microphone access with classified errors, and one RTCPeerConnection to the server:
// audio+video sendrecv, trickle ICE both ways (the offer goes at once; candidates follow as rtc.ice,
// the server's own come back as rtc.ice too), and the truth about the remote video (frames, not states).

export class MediaAccessError extends Error {
  /** kind: denied | no_device | in_use | insecure | unsupported | other */
  constructor(kind, cause) {
    super(cause?.message || kind);
    this.kind = kind;
    this.name = cause?.name || 'MediaAccessError';
  }
}

const VIDEO = { facingMode: 'user', width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 15, max: 30 } };
const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

function classify(err) {
  switch (err && err.name) {
    case 'NotAllowedError': case 'PermissionDeniedError': case 'SecurityError': return 'denied';
    case 'NotFoundError': case 'DevicesNotFoundError': case 'OverconstrainedError': return 'no_device';
    case 'NotReadableError': case 'TrackStartError': case 'AbortError': return 'in_use';
    default: return 'other';
  }
}

/** The local camera and microphone; a missing microphone alone is tolerated (video only). */
export async function getLocalMedia({ video = true, audio = true } = {}) {
  if (!window.isSecureContext) throw new MediaAccessError('insecure');
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) throw new MediaAccessError('unsupported');
  try {
    return await navigator.mediaDevices.getUserMedia({ video: video && VIDEO, audio: audio && AUDIO });
  } catch (err) {
    const kind = classify(err);
    if (kind === 'no_device' && video && audio) {
      try { return await navigator.mediaDevices.getUserMedia({ video: VIDEO, audio: false }); } catch { /* fall through */ }
    }
    throw new MediaAccessError(kind, err);
  }
}

export function stopStream(stream) {
  if (stream) for (const track of stream.getTracks()) track.stop();
}

// WsError codes that mean the request never reached the server (see ws-client.js)
const NO_SIGNALLING = new Set(['disconnected', 'timeout']);

/**
 * One party's media link with the server.
 *   link = new PeerLink({iceServers, stream, onRemote(stream), onState(state)})
 *   await link.negotiate(async (sdp, {iceRestart}) => answerSdp, (candidateInit|null) => send it)  // a new connection
 *   await link.reconnect(sendOffer, sendCandidate)   // ICE restart on the live connection, else a new one
 *   link.addRemoteCandidate(candidateInit|null)   // the server's rtc.ice
 */
export class PeerLink {
  constructor({ iceServers = [], stream = null, onRemote, onState }) {
    this.iceServers = iceServers;
    this.stream = stream;
    this.onRemote = onRemote;
    this.onState = onState;
    this.pc = null;
    this.remote = null;
    this.early = [];  // the server's candidates that came before its answer was applied
    this.restarting = false;
  }

  get state() { return this.pc ? this.pc.connectionState : 'closed'; }

  async negotiate(sendOffer, sendCandidate = null) {
    this.close();
    const pc = new RTCPeerConnection({ iceServers: this.iceServers });
    this.pc = pc;
    this.early = [];
    this.remote = new MediaStream();
    for (const kind of ['audio', 'video']) {
      const track = this.stream && this.stream.getTracks().find((tr) => tr.kind === kind);
      if (track) pc.addTransceiver(track, { direction: 'sendrecv', streams: [this.stream] });
      else pc.addTransceiver(kind, { direction: 'recvonly' });
    }
    pc.ontrack = (ev) => {
      if (pc !== this.pc) return;
      this.remote.addTrack(ev.track);
      this.onRemote?.(this.remote);
    };
    pc.onconnectionstatechange = () => { if (pc === this.pc) this.onState?.(pc.connectionState); };
    // trickle: candidates go as they are found (mDNS names included: the server learns the real
    // address from the checks), so the offer never waits for gathering
    pc.onicecandidate = (ev) => {
      if (pc !== this.pc || !sendCandidate) return;
      sendCandidate(ev.candidate && ev.candidate.candidate ? ev.candidate.toJSON() : null);
    };
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    // without a sendCandidate the offer carries what was gathered so far (aiortc-style clients)
    const answer = await sendOffer(pc.localDescription.sdp, { iceRestart: false });
    if (pc !== this.pc) return;
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    for (const candidate of this.early.splice(0)) await this._add(pc, candidate);
  }

  /**
   * A network change (new Wi-Fi, Wi-Fi to 4G): restart ICE on the live connection, so the call, its
   * DTLS session and its recording carry on over new candidates. Throws when the server cannot
   * (it no longer holds this connection, e.g. after it restarted): then negotiate() anew.
   */
  async restartIce(sendOffer) {
    const pc = this.pc;
    if (!pc || !pc.remoteDescription || pc.signalingState !== 'stable' || pc.connectionState === 'closed') {
      throw new Error('no connection to restart');
    }
    this.restarting = true;
    this.early = [];
    try {
      await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
      let answer;
      try {
        answer = await sendOffer(pc.localDescription.sdp, { iceRestart: true });
      } catch (err) {
        if (pc === this.pc && pc.signalingState === 'have-local-offer') {
          await pc.setLocalDescription({ type: 'rollback' }).catch(() => {});
        }
        throw err;
      }
      if (pc !== this.pc) return;
      await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    } finally {
      this.restarting = false;
    }
    for (const candidate of this.early.splice(0)) await this._add(pc, candidate);
  }

  /**
   * Bring the media back: an ICE restart where the connection lives on, else a new connection. With
   * no signalling right now (the socket is down too: the same network change) it throws and keeps
   * the connection, so the next attempt, once the socket is back, can still restart it.
   */
  async reconnect(sendOffer, sendCandidate = null) {
    if (this.pc && this.pc.remoteDescription && this.pc.connectionState !== 'closed') {
      try {
        await this.restartIce(sendOffer);
        return 'restarted';
      } catch (err) {
        if (NO_SIGNALLING.has(err.code)) throw err;
        console.info('ICE restart not possible, making a new connection:', err.code || err.message);
      }
    }
    await this.negotiate(sendOffer, sendCandidate);
    return 'new';
  }

  /** A candidate of the server's (null: it has no more). */
  addRemoteCandidate(candidate) {
    const pc = this.pc;
    if (!pc) return;
    if (!pc.remoteDescription || this.restarting) this.early.push(candidate);
    else this._add(pc, candidate);
  }

  async _add(pc, candidate) {
    try {
      await pc.addIceCandidate(candidate || { candidate: '' });
    } catch { /* a duplicate of one in the answer, or after its end-of-candidates: nothing lost */ }
  }

  close() {
    if (this.pc) {
      const pc = this.pc;
      this.pc = null;
      pc.ontrack = null;
      pc.onconnectionstatechange = null;
      pc.onicecandidate = null;
      try { pc.close(); } catch { /* already closed */ }
    }
  }
}

/** Keeps a link up: calls renegotiate() (which should try link.reconnect) when the connection fails or
 *  stays disconnected. */
export function keepAlive(link, renegotiate, { graceMs = 4000, maxAttempts = 5 } = {}) {
  let timer = null;
  let attempts = 0;
  const prev = link.onState;
  link.onState = (state) => {
    prev?.(state);
    clearTimeout(timer);
    if (state === 'connected') { attempts = 0; return; }
    if (state === 'failed' || state === 'disconnected') {
      timer = setTimeout(() => {
        if (link.state === 'connected' || attempts >= maxAttempts) return;
        attempts += 1;
        renegotiate().catch((e) => console.warn('renegotiation failed', e));
      }, state === 'failed' ? 200 : graceMs);
    }
  };
  return () => clearTimeout(timer);
}

/** Whether a video element is showing moving frames (for status displays). */
export function isPlaying(video) {
  return video.videoWidth > 0 && !video.paused && video.readyState >= 2;
}

/**
 * Watches a remote video for real frames: onChange(true) once frames move, onChange(false) when
 * they stop for stallMs (a "connected" peer connection can still show a black screen).
 * Returns a stop function.
 */
export function watchFrames(video, onChange, { stallMs = 3000 } = {}) {
  let last = -1;
  let lastMove = 0;
  let moving = null;
  const tick = () => {
    const now = Date.now();
    const t = video.currentTime;
    if (video.videoWidth > 0 && t !== last) { last = t; lastMove = now; }
    const isMoving = lastMove > 0 && now - lastMove < stallMs;
    if (isMoving !== moving) { moving = isMoving; onChange(isMoving); }
  };
  const timer = setInterval(tick, 500);
  tick();
  return () => clearInterval(timer);
}
