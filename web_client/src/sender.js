// The browser sender: webcam -> Face Mesh -> the person followed -> expression frames on `expr`.
import { requireWebGL2 } from "./facemesh.js";
import { ExpressionBasis, ExpressionTracker, FaceLock, encodeFrame, frameFlags } from "./tracking.js";
import { $, RequestError, api, setFace, showError, showSlowTracking, status } from "./ui.js";

const SEND_FPS = 30;
const NO_FACE_MESSAGE_MS = 1500;
const CAMERA_STALL_MS = 1000; // no new picture this long: say so (the avatar holds its pose)
const CAMERA_RETRY_MS = 2000; // a camera that ended is asked for again this often

// A tracker in the avatar's expression space (its basis from the server).
async function trackerFor(avatarId) {
  const json = await api(`/api/avatars/${encodeURIComponent(avatarId)}/encoder`);
  return new ExpressionTracker(new ExpressionBasis(json));
}

export class Sender {
  // `faceMesh`: the page's FaceMeshRunner (shared with the avatar recorder).
  constructor(session, faceMesh) {
    this.session = session;
    this.faceMesh = faceMesh;
    this.video = $("self-view");
    this.tracker = null;
    this.running = false;
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
    requireWebGL2("The browser sender");
    this.tracker = await trackerFor(this.session.avatar);
    await this.openCamera();
    setFace("calibrating", "loading Face Mesh…");
    await this.faceMesh.start();
    this.running = true;
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

  // Switch only once the server has: until its {"type": "avatar"} acknowledgement nothing is sent
  // (frames in the old avatar's expression space mean nothing to the new one).
  async switchAvatar(avatarId) {
    const tracker = await trackerFor(avatarId);
    this.switching = true;
    try {
      await this.session.request({ type: "avatar", avatar: avatarId }, (reply) => reply.type === "avatar" && reply.avatar === avatarId);
      this.tracker = tracker;
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
    if (this.busy || !this.running || !this.checkCamera(performance.now()) || this.video.readyState < 2) return;
    this.busy = true;
    try {
      const { faces, sentAt, ms } = await this.faceMesh.detect(this.video);
      if (!this.running) return; // stopped meanwhile
      this.onFaces(faces, (performance.timeOrigin + sentAt) / 1000);
      // The first call also starts the graph: leave it out of the running mean.
      if (this.warm) status.faceMeshMs = status.faceMeshMs == null ? ms : 0.9 * status.faceMeshMs + 0.1 * ms;
      this.warm = true;
    } catch (error) {
      if (this.running) showError(`Face Mesh failed: ${error?.message ?? error}`);
    } finally {
      this.busy = false;
    }
  }

  // `detected`: the faces Face Mesh found, [F][478][3] pixels; `captureTime` in seconds.
  onFaces(detected, captureTime) {
    const faces = detected.filter((points) => points.length === this.tracker.template.points.length);
    const followed = this.lock.select(faces, this.video.videoWidth, this.video.videoHeight, captureTime);
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
    const state = this.tracker.process(points, captureTime, followed?.continuity);
    status.trackerState = { ...state, calibrated: this.tracker.calibrated };
    setFace(
      !state.facePresent ? "none" : state.calibrating ? "calibrating" : "tracking",
      !state.facePresent ? "no face" : state.calibrating ? "calibrating neutral — keep still" : "tracking",
    );
    $("tracking").textContent = state.facePresent ? (state.calibrating ? "calibrating" : "tracking") : "no face";
    if (this.paused || this.switching) return;
    const bytes = encodeFrame({ seq: this.seq, timestamp: captureTime, ...state, flags: frameFlags(state) });
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
    this.running = false;
    this.stream?.getTracks().forEach((track) => track.stop());
    this.video.srcObject = null;
  }
}

export function cameraMessage(error) {
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
