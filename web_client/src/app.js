// The browser client: viewer (every avatar of a room as live video, with stats) and sender
// (webcam -> Face Mesh -> ExpressionFrames on the `expr` data channel). docs/web_client.md.
import { ExpressionBasis, ExpressionTracker, FaceLock, encodeFrame, frameFlags } from "./tracking.js";

// What the page and the server must agree on comes from the server (GET /api/config): the video
// seats to receive (Limits.video_seats; seats follow the room's join order, a sender's own
// avatar is one of them and is shown first), the room-name pattern, the ctrl message types.
const config = {
  video_seats: 4,
  room_name_pattern: "^[A-Za-z0-9_-]{1,64}$",
  ctrl_requests: [],
  ctrl_replies: [],
};
const SEND_FPS = 30;
const ICE_GATHER_TIMEOUT_MS = 3000;
const DISCONNECTED_GRACE_MS = 4000; // `disconnected` that lasts this long -> reconnect
const NO_FACE_MESSAGE_MS = 1500;
const CAMERA_STALL_MS = 1000; // no new picture this long: say so (the avatar holds its pose)
const CAMERA_RETRY_MS = 2000; // a camera that ended is asked for again this often
const MAX_FACES = 2; // Face Mesh looks for two; the FaceLock follows one person
const MAX_BACKOFF_S = 10;
const CTRL_REPLY_TIMEOUT_MS = 5000;

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

// What the tests (and a curious user in the console) can read.
const status = {
  state: "idle",
  error: null,
  seats: [],
  framesSent: 0,
  bytesSent: 0,
  lastFrameBytes: 0,
  faceMeshMs: null,
  facesSeen: 0,
  cameraStalls: 0,
  cameraReopened: 0,
  trackerState: null,
  stats: [],
};
window.telepresence = status;

class RequestError extends Error {
  constructor(message, { status: httpStatus = 0, retry = false } = {}) {
    super(message);
    this.status = httpStatus;
    this.retry = retry;
  }
}

// ---------------------------------------------------------------- UI helpers

function showError(message) {
  status.error = message;
  const box = $("error");
  box.textContent = message ?? "";
  box.hidden = !message;
}

function setState(state, text) {
  status.state = state;
  const badge = $("state");
  badge.dataset.state = state;
  badge.textContent = text ?? state;
}

function mode() {
  return document.querySelector('input[name="mode"]:checked').value;
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch {
    throw new RequestError(`Server unreachable at ${location.origin}. Is \`telepresence serve\` running?`, {
      retry: true,
    });
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const detail = body?.error ?? `HTTP ${response.status}`;
    if (response.status === 429) {
      const what = /full/.test(detail) ? "This room is full" : "The server is busy";
      throw new RequestError(`${what}: ${detail}.`, { status: 429, retry: true });
    }
    if (response.status === 401 || response.status === 403) {
      throw new RequestError(`Not allowed: ${detail}`, { status: response.status });
    }
    if (response.status >= 500) {
      throw new RequestError(`Server error: ${detail}`, { status: response.status, retry: true });
    }
    throw new RequestError(detail, { status: response.status });
  }
  return body;
}

async function loadAvatars() {
  const select = $("avatar");
  const { avatars } = await api("/api/avatars");
  select.replaceChildren(
    ...avatars.map((a) => new Option(`${a.id} (E=${a.expression_dim})`, a.id)),
  );
  const wanted = params.get("avatar");
  if (wanted && avatars.some((a) => a.id === wanted)) select.value = wanted;
  return avatars;
}

// ---------------------------------------------------------------- seats (avatar videos)

function buildSeats(count) {
  const container = $("seats");
  container.querySelectorAll(".seat").forEach((el) => el.remove());
  status.seats = [];
  for (let i = 0; i < count; i++) {
    const node = $("seat-template").content.firstElementChild.cloneNode(true);
    node.dataset.seat = String(i);
    node.hidden = true;
    container.append(node);
    status.seats.push({ element: node, video: node.querySelector("video"), participant: null });
  }
}

// Face Mesh slower than a 30 fps frame (33 ms) on this device: say what that costs.
const SLOW_TRACKING_MS = 50;
function showSlowTracking(ms) {
  const note = $("slow-tracking");
  note.hidden = !(ms > SLOW_TRACKING_MS);
  if (note.hidden) return;
  const rate = Math.min(30, 1000 / ms).toFixed(0);
  note.textContent =
    `Face tracking is slow on this device (${ms.toFixed(0)} ms a frame): your avatar moves about ` +
    `${rate} times a second and follows you ${ms.toFixed(0)} ms later. A faster device or ` +
    `closing other tabs helps.`;
}

// The sender panel says plainly whose avatar this webcam moves.
function showDriving(avatarId) {
  $("driving").textContent = `You are driving: ${avatarId}`;
}

function showSeats(seats) {
  // seats: [{seat, participant, avatar}] from the server's `seats` ctrl message.
  for (const seat of status.seats) seat.participant = null;
  for (const entry of seats ?? []) {
    const seat = status.seats[entry.seat];
    if (!seat) continue;
    seat.participant = entry.participant;
    const own = entry.participant != null && entry.participant === status.participant;
    seat.element.classList.toggle("own", own);
    // people, not ids: "you", else "guest N" in the order the room's senders joined
    seat.element.querySelector("figcaption").textContent = own
      ? `you · ${entry.avatar ?? "avatar"}`
      : `guest ${entry.seat + 1} · ${entry.avatar ?? "avatar"}`;
  }
  let shown = 0;
  for (const seat of status.seats) {
    seat.element.hidden = !seat.participant;
    if (seat.participant) shown++;
  }
  $("empty").hidden = shown > 0;
  $("empty").textContent = "Nobody is sending in this room yet. Waiting for someone to join…";
}

// ---------------------------------------------------------------- the connection

class Session {
  constructor({ room, token, role, avatar }) {
    this.room = room;
    this.token = token || undefined;
    this.role = role;
    this.avatar = avatar;
    this.pc = null;
    this.expr = null;
    this.ctrl = null;
    this.closed = false;
    this.attempt = 0;
    this.retryTimer = null;
    this.disconnectTimer = null;
    this.statsTimer = null;
    this.sentAt = new Map(); // seq -> send time (ms), for the latency estimate
    this.renderLatencyMs = null;
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
    } else if (message.type === "stats" && message.rendered_seq != null) {
      const sent = this.sentAt.get(message.rendered_seq);
      if (sent !== undefined) this.renderLatencyMs = performance.now() - sent;
    } else if (message.type === "error") {
      if (message.kind !== "rate") showError(`Server: ${message.error}`);
    } else if (message.type === "avatar") {
      this.avatar = message.avatar;
      showDriving(this.avatar);
    }
  }

  // Per seat: fps, latency estimate, downlink kbps, connection state.
  async pollStats() {
    const pc = this.pc;
    if (!pc) return;
    if (this.role === "sender") this.sendCtrl({ type: "stats" });
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
      // + half a frame interval: on average a render waits that long for the track's next tick.
      const pacingMs = fps ? 500 / fps : 0;
      const latencyMs = upstream + pacingMs + oneWay + jitterMs + decodeMs;
      const values = {
        fps: fps != null ? fps.toFixed(1) : "–",
        latency: `≈${latencyMs.toFixed(0)} ms`,
        kbps: kbps != null ? `${kbps.toFixed(0)} kbit/s` : "–",
        state: pc.connectionState,
        chip: fps != null ? `${fps.toFixed(0)} fps · ≈${latencyMs.toFixed(0)} ms` : pc.connectionState,
      };
      for (const [name, value] of Object.entries(values)) {
        seat.element.querySelector(`[data-stat="${name}"]`).textContent = value;
      }
      return { fps, kbps, latencyMs, framesDecoded: inbound.framesDecoded ?? 0, state: pc.connectionState };
    });
  }
}

// ---------------------------------------------------------------- the browser sender

class Sender {
  constructor(session) {
    this.session = session;
    this.video = $("self-view");
    this.tracker = null;
    this.faceMesh = null;
    this.seq = 0;
    this.paused = false;
    this.busy = false;
    this.lastFaceAt = performance.now();
    this.lock = new FaceLock();
    this.lastPictureAt = performance.now();
    this.stalled = false;
    this.reopening = null;
    this.switching = false;
    this.timer = null;
    this.window = [];
    this.warm = false;
  }

  async start() {
    if (!document.createElement("canvas").getContext("webgl2")) {
      throw new RequestError(
        "The browser sender needs WebGL 2 (Face Mesh runs on it) and this browser provides none: " +
          "turn on hardware acceleration, try another browser, or join as a viewer.",
      );
    }
    await this.useAvatar(this.session.avatar);
    await this.openCamera();
    if (typeof window.FaceMesh !== "function") {
      throw new RequestError("Face Mesh did not load (mediapipe/face_mesh.js is missing from the build).");
    }
    this.faceMesh = new window.FaceMesh({ locateFile: (file) => `/static/mediapipe/${file}` });
    this.faceMesh.setOptions({
      maxNumFaces: MAX_FACES,
      refineLandmarks: true,
      minDetectionConfidence: 0.5,
      minTrackingConfidence: 0.5,
    });
    this.faceMesh.onResults((results) => this.onResults(results));
    setFace("calibrating", "loading Face Mesh…");
    try {
      await this.faceMesh.initialize();
    } catch (error) {
      throw new RequestError(`Face Mesh could not start in this browser: ${error?.message ?? error}`);
    }
    this.timer = setInterval(() => this.tick(), 1000 / SEND_FPS);
  }

  async openCamera() {
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } },
        audio: false,
      });
    } catch (error) {
      throw new RequestError(cameraMessage(error));
    }
    this.stream?.getTracks().forEach((track) => track.stop());
    this.stream = stream;
    this.video.srcObject = stream;
    await this.video.play().catch(() => undefined);
    this.lastPictureAt = performance.now();
    const onPicture = () => {
      if (this.video.srcObject !== stream) return; // a camera since replaced
      this.lastPictureAt = performance.now();
      this.video.requestVideoFrameCallback(onPicture);
    };
    this.video.requestVideoFrameCallback(onPicture);
  }

  // A camera that sends no pictures (stalled, unplugged, taken by another app) is reported;
  // the server keeps showing the last pose meanwhile. One that ended is asked for again.
  checkCamera(now) {
    if (now - this.lastPictureAt <= CAMERA_STALL_MS) {
      if (this.stalled) {
        this.stalled = false;
        showError(null);
      }
      return true;
    }
    const ended = this.stream?.getVideoTracks().every((track) => track.readyState === "ended");
    if (!this.stalled) {
      this.stalled = true;
      status.cameraStalls++;
    }
    showError(
      ended
        ? "The camera stopped (unplugged, or taken by another app); the avatar holds its last pose. Trying to reopen it…"
        : `The camera has sent no picture for ${Math.round((now - this.lastPictureAt) / 1000)} s; the avatar holds its last pose.`,
    );
    if (ended && !this.reopening) {
      this.reopening = new Promise((resolve) => setTimeout(resolve, CAMERA_RETRY_MS))
        .then(() => this.openCamera())
        .then(() => status.cameraReopened++)
        .catch(() => undefined)
        .finally(() => {
          this.reopening = null;
        });
    }
    return false;
  }

  async useAvatar(avatarId) {
    const json = await api(`/api/avatars/${encodeURIComponent(avatarId)}/encoder`);
    this.tracker = new ExpressionTracker(new ExpressionBasis(json));
  }

  // Switch only once the server has: until its {"type": "avatar"} acknowledgement nothing is sent
  // (frames in the old avatar's expression space mean nothing to the new one).
  async switchAvatar(avatarId) {
    const json = await api(`/api/avatars/${encodeURIComponent(avatarId)}/encoder`);
    this.switching = true;
    try {
      await this.session.request({ type: "avatar", avatar: avatarId }, (reply) => reply.type === "avatar" && reply.avatar === avatarId);
      this.tracker = new ExpressionTracker(new ExpressionBasis(json));
      this.lock.reset();
      this.session.avatar = avatarId;
    } finally {
      this.switching = false;
    }
  }

  calibrate() {
    this.tracker?.recalibrate();
    this.lock.reset();
    this.session.sendCtrl({ type: "calibrate" });
  }

  async tick() {
    if (this.busy || !this.faceMesh || !this.checkCamera(performance.now()) || this.video.readyState < 2) return;
    this.busy = true;
    const started = performance.now();
    try {
      this.captureTime = (performance.timeOrigin + started) / 1000;
      await this.faceMesh.send({ image: this.video });
      const ms = performance.now() - started;
      // The first call also starts the graph: leave it out of the running mean.
      if (this.warm) status.faceMeshMs = status.faceMeshMs == null ? ms : 0.9 * status.faceMeshMs + 0.1 * ms;
      this.warm = true;
    } catch (error) {
      showError(`Face Mesh failed: ${error?.message ?? error}`);
    } finally {
      this.busy = false;
    }
  }

  onResults(results) {
    const width = this.video.videoWidth;
    const height = this.video.videoHeight;
    const faces = (results.multiFaceLandmarks ?? [])
      .filter((landmarks) => landmarks.length === this.tracker.template.points.length)
      .map((landmarks) => landmarks.map((p) => [p.x * width, p.y * height, p.z * width]));
    const followed = this.lock.select(faces, width, height, this.captureTime);
    const points = followed?.points ?? null;
    const now = performance.now();
    if (points) {
      status.facesSeen++;
      this.lastFaceAt = now;
      if (status.error?.startsWith("No face")) showError(null);
    } else if (now - this.lastFaceAt > NO_FACE_MESSAGE_MS) {
      showError(
        faces.length
          ? "Only someone else is in view: the avatar follows the person it calibrated on (press Calibrate neutral to follow whoever is in front of the camera)."
          : "No face detected. Face the camera in good light; the avatar holds its last expression.",
      );
    }
    const state = this.tracker.process(points, this.captureTime, followed?.continuity);
    status.trackerState = { ...state, calibrated: this.tracker.calibrated };
    setFace(
      !state.facePresent ? "none" : state.calibrating ? "calibrating" : "tracking",
      !state.facePresent ? "no face" : state.calibrating ? "calibrating neutral — keep still" : "tracking",
    );
    $("tracking").textContent = state.facePresent ? (state.calibrating ? "calibrating" : "tracking") : "no face";
    if (this.paused || this.switching) return;
    const bytes = encodeFrame({ seq: this.seq, timestamp: this.captureTime, ...state, flags: frameFlags(state) });
    if (this.session.sendFrame(bytes, this.seq)) {
      status.framesSent++;
      status.bytesSent += bytes.byteLength;
      status.lastFrameBytes = bytes.byteLength;
      this.window.push(now);
      while (this.window.length && now - this.window[0] > 2000) this.window.shift();
    }
    this.seq = (this.seq + 1) >>> 0;
    $("uplink-bytes").textContent = `${status.lastFrameBytes} B/frame`;
    $("uplink-fps").textContent = `${(this.window.length / 2).toFixed(1)} frames/s`;
    $("facemesh-ms").textContent = status.faceMeshMs != null ? `${status.faceMeshMs.toFixed(0)} ms/frame` : "–";
    showSlowTracking(status.faceMeshMs);
  }

  stop() {
    clearInterval(this.timer);
    this.stream?.getTracks().forEach((track) => track.stop());
    this.faceMesh?.close();
    this.faceMesh = null;
    this.video.srcObject = null;
  }
}

function cameraMessage(error) {
  switch (error?.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "Camera permission denied. Allow camera access for this page (the lock icon in the address bar) and join again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera found. Connect a webcam and join again, or join as a viewer.";
    case "NotReadableError":
      return "The camera is in use by another application.";
    default:
      return `Cannot open the camera: ${error?.message ?? error}`;
  }
}

function setFace(state, text) {
  const badge = $("face");
  badge.dataset.face = state;
  badge.textContent = text;
}

// ---------------------------------------------------------------- wiring

let session = null;
let sender = null;

async function join(event) {
  event?.preventDefault();
  leave();
  showError(null);
  const room = $("room").value.trim();
  if (!new RegExp(config.room_name_pattern).test(room)) {
    showError("Room names are 1–64 letters, digits, '-' or '_'.");
    return;
  }
  const role = mode();
  $("join-button").hidden = true;
  $("leave-button").hidden = false;
  $("sender").hidden = role !== "sender";
  session = new Session({ room, token: $("token").value.trim(), role, avatar: $("avatar").value });
  try {
    if (role === "sender") {
      showDriving(session.avatar);
      sender = new Sender(session);
      await sender.start();
    }
    await session.start();
  } catch (error) {
    leave();
    $("sender").hidden = true;
    setState("failed", "not connected");
    showError(error?.message ?? String(error));
  }
}

function leave() {
  sender?.stop();
  session?.close();
  sender = null;
  session = null;
  $("join-button").hidden = false;
  $("leave-button").hidden = true;
}

async function init() {
  $("room").value = params.get("room") ?? $("room").value;
  $("token").value = params.get("token") ?? "";
  const role = params.get("role");
  if (role === "sender" || role === "viewer") {
    document.querySelector(`input[name="mode"][value="${role}"]`).checked = true;
  }
  $("join").addEventListener("submit", join);
  $("leave-button").addEventListener("click", leave);
  $("calibrate").addEventListener("click", () => sender?.calibrate());
  $("toggle-self").addEventListener("click", (event) => {
    const self = document.querySelector(".self");
    const hidden = self.classList.toggle("hidden");
    event.target.textContent = hidden ? "Show self-view" : "Hide self-view";
    event.target.setAttribute("aria-pressed", String(hidden));
  });
  $("pause").addEventListener("click", (event) => {
    if (!sender) return;
    sender.paused = !sender.paused;
    event.target.textContent = sender.paused ? "Resume sending" : "Pause sending";
    event.target.setAttribute("aria-pressed", String(sender.paused));
  });
  $("avatar").addEventListener("change", () => {
    if (sender) sender.switchAvatar($("avatar").value).catch((error) => showError(error.message));
  });
  try {
    Object.assign(config, await api("/api/config"));
    $("room").pattern = config.room_name_pattern.replace(/^\^|\$$/g, "");
    await loadAvatars();
  } catch (error) {
    showError(error.message);
    setState("failed", "server unreachable");
    return;
  }
  if (params.get("autojoin") === "1") join();
}

init();
