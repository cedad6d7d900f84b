// The connection: signalling, the peer connection with its expr and ctrl channels, reconnecting
// with backoff, ctrl requests and their replies, and the per-seat stats.
import { buildSeats, showSeats } from "./seats.js";
import { SfuViewer } from "./sfu.js";
import { RequestError, api, config, params, setState, showDriving, showError, status } from "./ui.js";

const ICE_GATHER_TIMEOUT_MS = 3000;
const DISCONNECTED_GRACE_MS = 4000; // `disconnected` that lasts this long -> reconnect
const MAX_BACKOFF_S = 10;
const CTRL_REPLY_TIMEOUT_MS = 5000;

export class Session {
  constructor({ room, token, role, avatar }) {
    this.room = room;
    this.token = token || undefined;
    this.role = role;
    this.avatar = avatar;
    this.pc = null;
    this.sfu = null; // a viewer of a room whose media lives in the SFU (sfu.js)
    this.expr = null;
    this.ctrl = null;
    this.closed = false;
    this.attempt = 0;
    this.retryTimer = null;
    this.disconnectTimer = null;
    this.statsTimer = null;
    this.sentAt = new Map(); // seq -> send time (ms), for the latency estimate
    this.renderLatencyMs = null;
    this.renderLevel = null; // the server's render level (ctrl stats: resolution, fps cap)
    this.ownLatencyMs = null; // the estimated latency of this sender's own avatar
    this.waiting = []; // ctrl requests waiting for their reply: { matches, resolve, reject, timer }
    this.previous = new Map();
  }

  async start() {
    this.closed = false;
    await this.connect();
    this.statsTimer = setInterval(() => this.pollStats(), 1000);
  }

  async connect() {
    if (this.closed) return;
    setState(this.attempt ? "reconnecting" : "connecting", this.attempt ? "reconnecting…" : "connecting…");
    const seats = config.video_seats;
    buildSeats(seats);
    try {
      if (this.role === "viewer") {
        const media = await this.roomMedia();
        if (this.closed) return;
        if (media) {
          await this.watchThroughSfu(media, seats);
          return;
        }
      }
      const ice = await this.iceServers();
      const pc = new RTCPeerConnection({ iceServers: ice });
      this.pc = pc;
      status.pc = pc;
      this.ctrl = pc.createDataChannel("ctrl");
      this.ctrl.onmessage = (event) => this.onCtrl(event.data);
      // The server ends a session by closing the peer: the channel closes before ICE notices.
      this.ctrl.onclose = () => this.reconnect("The server closed the session");
      if (this.role === "sender") {
        this.expr = pc.createDataChannel("expr", { ordered: false, maxRetransmits: 0 });
        this.expr.binaryType = "arraybuffer";
      }
      for (let i = 0; i < seats; i++) {
        const transceiver = pc.addTransceiver("video", { direction: "recvonly" });
        askForMinimalPlayoutDelay(transceiver.receiver);
        const stream = new MediaStream([transceiver.receiver.track]);
        status.seats[i].video.srcObject = stream;
        status.seats[i].receiver = transceiver.receiver;
      }
      pc.onconnectionstatechange = () => this.onConnectionState();
      await pc.setLocalDescription(await pc.createOffer());
      await this.iceGathered(pc);
      const answer = await api(`/api/rooms/${encodeURIComponent(this.room)}/offer`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({
          sdp: pc.localDescription.sdp,
          type: "offer",
          role: this.role,
          avatar: this.role === "sender" ? this.avatar : undefined,
          token: this.token,
          // ?framing=auto|fixed|free (docs/protocol.md); the server defaults to auto
          framing: this.role === "sender" ? (params.get("framing") ?? undefined) : undefined,
        }),
      });
      if (this.closed) return;
      this.participant = answer.participant;
      status.participant = answer.participant;
      await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
    } catch (error) {
      this.teardownPeer();
      this.fail(error);
    }
  }

  // Where the room's avatars come from for a viewer: null (this receiver) or its SFU.
  async roomMedia() {
    const query = new URLSearchParams(this.token ? { token: this.token } : {});
    const answer = await api(`/api/rooms/${encodeURIComponent(this.room)}/media?${query}`);
    return answer.sfu ?? null;
  }

  async watchThroughSfu(media, seats) {
    const sfu = new SfuViewer({
      media,
      seats,
      fetchMedia: async () => {
        const found = await this.roomMedia();
        if (!found) throw new Error("the room's media is no longer in the SFU");
        return found;
      },
      onTrack: (seat, track, receiver) => {
        const entry = status.seats[seat];
        if (!entry) return;
        if (receiver) askForMinimalPlayoutDelay(receiver);
        entry.video.srcObject = new MediaStream([track]);
        entry.receiver = receiver;
        status.pc = sfu.pc;
        this.attempt = 0;
        showError(null);
        setState("connected", "connected");
      },
      onFeeds: (feeds) =>
        // receivers number their participants alike: a feed's person is participant@receiver
        showSeats(
          feeds.map((feed, seat) => ({ seat, participant: `${feed.participant}@${feed.receiver}`, avatar: feed.avatar })),
        ),
      onLost: (reason) => this.reconnect(reason),
    });
    this.sfu = sfu;
    status.sfu = media.url;
    await sfu.start();
  }

  async iceServers() {
    const query = new URLSearchParams({ room: this.room, role: this.role });
    if (this.token) query.set("token", this.token);
    const answer = await api(`/api/ice?${query}`);
    return answer.iceServers ?? [];
  }

  iceGathered(pc) {
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ICE_GATHER_TIMEOUT_MS);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }

  onConnectionState() {
    const state = this.pc?.connectionState;
    clearTimeout(this.disconnectTimer);
    if (state === "connected") {
      this.attempt = 0;
      showError(null);
      setState("connected", "connected");
    } else if (state === "disconnected") {
      setState("reconnecting", "connection interrupted…");
      this.disconnectTimer = setTimeout(() => this.reconnect("The connection was interrupted"), DISCONNECTED_GRACE_MS);
    } else if (state === "failed" || state === "closed") {
      this.reconnect("The connection to the server failed");
    }
  }

  fail(error) {
    const retry = error instanceof RequestError ? error.retry : true;
    const message = error?.message ?? String(error);
    if (!retry) {
      setState("failed", "not connected");
      showError(message);
      return;
    }
    this.scheduleRetry(message);
  }

  reconnect(reason) {
    if (this.closed) return;
    this.teardownPeer();
    this.scheduleRetry(`${reason}.`);
  }

  scheduleRetry(message) {
    if (this.closed) return;
    clearTimeout(this.retryTimer);
    const delay = Math.min(MAX_BACKOFF_S, 2 ** this.attempt);
    this.attempt++;
    setState("reconnecting", `retrying in ${delay} s`);
    showError(`${message} Retrying in ${delay} s…`);
    this.retryTimer = setTimeout(() => this.connect(), delay * 1000);
  }

  teardownPeer() {
    clearTimeout(this.disconnectTimer);
    if (this.sfu) this.sfu.close();
    this.sfu = null;
    if (this.ctrl) this.ctrl.onclose = null;
    if (this.pc) {
      this.pc.onconnectionstatechange = null;
      this.pc.close();
    }
    this.pc = null;
    this.expr = null;
    this.ctrl = null;
  }

  close() {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.statsTimer);
    this.teardownPeer();
    buildSeats(0);
    setState("idle", "not connected");
  }

  sendCtrl(message) {
    if (this.ctrl?.readyState === "open") this.ctrl.send(JSON.stringify(message));
  }

  // Send a ctrl request and wait for the reply that `matches` (a ctrl error fails it).
  request(message, matches, timeoutMs = CTRL_REPLY_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      const waiting = { matches, resolve, reject };
      waiting.timer = setTimeout(() => {
        this.waiting = this.waiting.filter((w) => w !== waiting);
        reject(new Error(`The server did not answer the ${message.type} request.`));
      }, timeoutMs);
      this.waiting.push(waiting);
      this.sendCtrl(message);
    });
  }

  sendFrame(bytes, seq) {
    if (this.expr?.readyState !== "open") return false;
    if (this.expr.bufferedAmount > 16 * 1024) return false; // congested: skip, never queue
    this.expr.send(bytes);
    this.sentAt.set(seq, performance.now());
    if (this.sentAt.size > 300) this.sentAt.delete(this.sentAt.keys().next().value);
    return true;
  }

  // How long the frame the server shows now took from this page to its render: between the
  // age of the next frame sent (not shown yet) and its own age. Null when nothing was sent
  // after it (paused, or no face): then the age says nothing about latency.
  renderLatency(renderedSeq) {
    const sent = renderedSeq != null ? this.sentAt.get(renderedSeq) : undefined;
    let next;
    for (const [seq, at] of this.sentAt) {
      if (seq > renderedSeq && (next === undefined || at < next)) next = at;
    }
    if (sent === undefined || next === undefined) return null;
    const now = performance.now();
    return (now - sent + (now - next)) / 2;
  }

  onCtrl(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch {
      return;
    }
    for (const waiting of this.waiting) {
      const failed = message.type === "error" && message.kind === "ctrl";
      if (failed || waiting.matches(message)) {
        clearTimeout(waiting.timer);
        this.waiting = this.waiting.filter((w) => w !== waiting);
        if (failed) waiting.reject(new Error(`Server: ${message.error}`));
        else waiting.resolve(message);
        break;
      }
    }
    if (message.type === "seats") {
      showSeats(message.seats);
    } else if (message.type === "stats") {
      this.renderLevel = message.render ?? null;
      this.renderLatencyMs = this.renderLatency(message.rendered_seq) ?? this.renderLatencyMs;
    } else if (message.type === "error") {
      if (message.kind !== "rate") showError(`Server: ${message.error}`);
    } else if (message.type === "avatar") {
      this.avatar = message.avatar;
      showDriving(this.avatar);
    }
  }

  // Per seat: fps, latency estimate, downlink kbps, connection state.
  async pollStats() {
    const pc = this.sfu ? this.sfu.pc : this.pc;
    if (!pc) return;
    // rendered seq (senders) and the server's render level; a sender reports its own avatar's
    // latency estimate of the last poll (the server's /metrics: client_e2e_estimate_ms)
    const own = this.ownLatencyMs != null ? { e2e_ms: Math.round(this.ownLatencyMs), estimated: true } : {};
    this.sendCtrl({ type: "stats", ...own });
    const report = await pc.getStats();
    let rttMs = null;
    report.forEach((s) => {
      if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime != null) {
        rttMs = s.currentRoundTripTime * 1000;
      }
    });
    const now = performance.now();
    status.stats = status.seats.map((seat) => {
      let inbound = null;
      report.forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video" && s.trackIdentifier === seat.receiver?.track.id) inbound = s;
      });
      if (!inbound) return null;
      const key = seat.receiver.track.id;
      const before = this.previous.get(key);
      this.previous.set(key, { t: now, bytes: inbound.bytesReceived, frames: inbound.framesDecoded ?? 0 });
      const seconds = before ? (now - before.t) / 1000 : 0;
      const fps = before && seconds > 0 ? ((inbound.framesDecoded ?? 0) - before.frames) / seconds : null;
      const kbps = before && seconds > 0 ? ((inbound.bytesReceived - before.bytes) * 8) / seconds / 1000 : null;
      const jitterMs = inbound.jitterBufferEmittedCount
        ? (1000 * inbound.jitterBufferDelay) / inbound.jitterBufferEmittedCount
        : 0;
      const decodeMs = inbound.framesDecoded ? (1000 * (inbound.totalDecodeTime ?? 0)) / inbound.framesDecoded : 0;
      const oneWay = rttMs != null ? rttMs / 2 : 0;
      // Own seat: Face Mesh + expression frame sent -> rendered (ctrl stats) + video path;
      // others: the video path only.
      // (an upper bound: the age of the newest rendered frame when the server answered).
      const upstream =
        seat.participant === status.participant && this.renderLatencyMs != null
          ? (status.faceMeshMs ?? 0) + this.renderLatencyMs
          : 0;
      // (the server renders each frame on arrival and sends it at once: no pacing wait)
      const latencyMs = upstream + oneWay + jitterMs + decodeMs;
      if (seat.participant === status.participant && this.renderLatencyMs != null) this.ownLatencyMs = latencyMs;
      const level = this.renderLevel;
      const reduced = level && level.level > 0;
      const values = {
        fps: fps != null ? fps.toFixed(1) : "–",
        latency: `≈${latencyMs.toFixed(0)} ms`,
        kbps: kbps != null ? `${kbps.toFixed(0)} kbit/s` : "–",
        state: pc.connectionState,
        render: level ? `${level.resolution} px · ≤${level.fps_cap.toFixed(0)} fps${reduced ? " (reduced: server busy)" : ""}` : "–",
        chip:
          fps != null
            ? `${fps.toFixed(0)} fps · ≈${latencyMs.toFixed(0)} ms${reduced ? " · reduced" : ""}`
            : pc.connectionState,
      };
      for (const [name, value] of Object.entries(values)) {
        seat.element.querySelector(`[data-stat="${name}"]`).textContent = value;
      }
      return {
        fps,
        kbps,
        latencyMs,
        jitterMs,
        framesDecoded: inbound.framesDecoded ?? 0,
        state: pc.connectionState,
        renderLevel: level,
      };
    });
  }
}

// The avatar video is rendered for this moment: ask the browser to play it out as soon as it can
// (jitterBufferTarget, and Chrome's older playoutDelayHint), unless ?playout=default asks for the
// browser's own buffering (to measure the difference: docs/benchmarks.md).
function askForMinimalPlayoutDelay(receiver) {
  if (params.get("playout") === "default") return;
  if ("jitterBufferTarget" in receiver) receiver.jitterBufferTarget = 0;
  if ("playoutDelayHint" in receiver) receiver.playoutDelayHint = 0;
}
