// The agent's media for one call: own camera (optional: without it the agent still sees and hears
// the customer), one peer connection with the server, renegotiated when it fails. The caption tells
// the truth: "connected" only while the customer's video really moves; the server's media.state says
// why it does not (the customer's media stalled, was lost, or never connected).
import { playWithSound } from '../shared/dom.js';
import { tx } from '../shared/i18n.js';
import { getLocalMedia, keepAlive, PeerLink, stopStream, watchFrames } from '../shared/webrtc.js';

export class CallMedia {
  /** els: {local, remote, unmute, caption}; onCameraError(err) when the agent's camera cannot start;
   *  onMediaLost() when the connection fails or drops (the socket may be gone too) */
  constructor(els, { onCameraError, onConnected, onMediaLost } = {}) {
    this.els = els;
    this.onCameraError = onCameraError;
    this.onMediaLost = onMediaLost;
    this.onConnected = onConnected;
    this.stream = null;
    this.link = null;
    this.sendOffer = null;
    this.sendCandidate = null;
    this.peer = null;  // the customer's media state from the server
    this.moving = false;
    this.stopWatch = null;
  }

  get connected() { return Boolean(this.link) && this.link.state === 'connected'; }

  /** sendOffer(sdp, {iceRestart}) -> answer sdp (rtc.offer with the call's session_id); sendCandidate(init|null) */
  async start(iceServers, sendOffer, sendCandidate) {
    const { local, remote, unmute } = this.els;
    this.sendOffer = sendOffer;
    this.sendCandidate = sendCandidate;
    this.peer = null;
    this.render();
    if (!this.stream) {
      try {
        this.stream = await getLocalMedia();
        local.srcObject = this.stream;
        local.play().catch(() => {});
      } catch (err) {
        this.onCameraError?.(err);
      }
    }
    if (!this.link) {
      this.link = new PeerLink({
        iceServers, stream: this.stream,
        onRemote: (stream) => {
          if (remote.srcObject !== stream) remote.srcObject = stream;
          playWithSound(remote, unmute);
        },
        onState: (s) => {
          remote.dataset.connection = s;
          if (s === 'connected') this.onConnected?.();
          if (s === 'failed' || s === 'disconnected') this.onMediaLost?.();
          this.render();
        },
      });
      keepAlive(this.link, () => this.negotiate());
      this.stopWatch = watchFrames(remote, (moving) => {
        this.moving = moving;
        remote.dataset.video = moving ? 'playing' : 'none';
        this.render();
      });
    }
    try { await this.negotiate(); } catch (err) { console.warn('media negotiation failed', err); }
  }

  /** Media (back): an ICE restart of the live connection if there is one the server holds, else a new one. */
  async negotiate() {
    if (this.link && this.sendOffer) await this.link.reconnect(this.sendOffer, this.sendCandidate);
  }

  /** The server's rtc.ice for this call. */
  addRemoteCandidate(candidate) { this.link?.addRemoteCandidate(candidate); }

  /** The server's media.state about the customer: connected | stalled | lost | not_connected. */
  peerState(state) {
    this.peer = state;
    this.els.remote.dataset.peer = state;
    this.render();
  }

  render() {
    const { caption } = this.els;
    const link = this.link ? this.link.state : 'new';
    let key;
    if (this.moving) key = 'call.connected';
    else if (link === 'failed' || link === 'disconnected') key = 'call.media_retry';
    else if (this.peer === 'stalled') key = 'call.peer_stalled';
    else if (this.peer === 'lost') key = 'call.peer_lost';
    else if (this.peer === 'not_connected') key = 'call.peer_not_connected';
    else if (link === 'connected') key = 'call.waiting_video';
    else key = 'call.connecting';
    caption.dataset.state = key.slice(5);
    tx(caption, key);
  }

  stop() {
    this.stopWatch?.();
    this.stopWatch = null;
    this.moving = false;
    this.link?.close();
    this.link = null;
    this.sendOffer = null;
    this.sendCandidate = null;
    stopStream(this.stream);
    this.stream = null;
    this.els.local.srcObject = null;
    this.els.remote.srcObject = null;
  }
}
