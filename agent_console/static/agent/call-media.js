// The agent's media for one call: own camera (optional: without it the agent still sees and hears
// the customer), one peer connection with the server, renegotiated when it fails.
import { playWithSound } from '../shared/dom.js';
import { tx } from '../shared/i18n.js';
import { getLocalMedia, keepAlive, PeerLink, stopStream } from '../shared/webrtc.js';

export class CallMedia {
  /** els: {local, remote, unmute, caption}; onCameraError(err) when the agent's camera cannot start */
  constructor(els, { onCameraError, onConnected } = {}) {
    this.els = els;
    this.onCameraError = onCameraError;
    this.onConnected = onConnected;
    this.stream = null;
    this.link = null;
    this.sendOffer = null;
  }

  get connected() { return Boolean(this.link) && this.link.state === 'connected'; }

  /** sendOffer(sdp) -> answer sdp (rtc.offer with the call's session_id) */
  async start(iceServers, sendOffer) {
    const { local, remote, unmute, caption } = this.els;
    this.sendOffer = sendOffer;
    tx(caption, 'call.connecting');
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
          if (s === 'connected') { tx(caption, 'call.connected'); this.onConnected?.(); }
          else if (s === 'failed' || s === 'disconnected') tx(caption, 'call.media_retry');
        },
      });
      keepAlive(this.link, () => this.negotiate());
    }
    try { await this.negotiate(); } catch (err) { console.warn('media negotiation failed', err); }
  }

  async negotiate() {
    if (this.link && this.sendOffer) await this.link.negotiate(this.sendOffer);
  }

  stop() {
    this.link?.close();
    this.link = null;
    this.sendOffer = null;
    stopStream(this.stream);
    this.stream = null;
    this.els.local.srcObject = null;
    this.els.remote.srcObject = null;
  }
}
