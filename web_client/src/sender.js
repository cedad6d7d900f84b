// The browser sender: webcam -> Face Mesh -> the person followed -> expression frames on `expr`.
import { ExpressionBasis, ExpressionTracker, FaceLock, encodeFrame, frameFlags } from "./tracking.js";
import { $, RequestError, api, setFace, showError, showSlowTracking, status } from "./ui.js";

const SEND_FPS = 30;
const NO_FACE_MESSAGE_MS = 1500;
const CAMERA_STALL_MS = 1000; // no new picture this long: say so (the avatar holds its pose)
const CAMERA_RETRY_MS = 2000; // a camera that ended is asked for again this often
const MAX_FACES = 2; // Face Mesh looks for two; the FaceLock follows one person

// A tracker in the avatar's expression space (its basis from the server).
async function trackerFor(avatarId) {
  const json = await api(`/api/avatars/${encodeURIComponent(avatarId)}/encoder`);
  return new ExpressionTracker(new ExpressionBasis(json));
}

export class Sender {
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
    this.tracker = await trackerFor(this.session.avatar);
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
