// One Face Mesh for the whole page: the sender and the avatar recorder share it (its WebGL graph
// is heavy: ~150-180 ms a frame in headless Chromium without a GPU, a few ms with one). Calls are
// serialised; each returns the faces it found in pixels.
import { RequestError } from "./ui.js";

const MAX_FACES = 2; // two, so that the FaceLock can follow one person among them

export function requireWebGL2(what) {
  if (!document.createElement("canvas").getContext("webgl2")) {
    throw new RequestError(
      `${what} needs WebGL 2 (Face Mesh runs on it) and this browser provides none: ` +
        "turn on hardware acceleration, try another browser, or join as a viewer.",
    );
  }
}

export class FaceMeshRunner {
  constructor() {
    this.faceMesh = null;
    this.starting = null;
    this.results = null;
    this.queue = Promise.resolve();
  }

  // Loads the graph once; later calls wait for the same start.
  start() {
    this.starting ??= this.create().catch((error) => {
      this.starting = null; // a later call may try again
      throw error;
    });
    return this.starting;
  }

  async create() {
    if (typeof window.FaceMesh !== "function") {
      throw new RequestError("Face Mesh did not load (mediapipe/face_mesh.js is missing from the build).");
    }
    const faceMesh = new window.FaceMesh({ locateFile: (file) => `/static/mediapipe/${file}` });
    faceMesh.setOptions({
      maxNumFaces: MAX_FACES,
      refineLandmarks: true,
      minDetectionConfidence: 0.5,
      minTrackingConfidence: 0.5,
    });
    faceMesh.onResults((results) => {
      this.results = results;
    });
    try {
      await faceMesh.initialize();
    } catch (error) {
      throw new RequestError(`Face Mesh could not start in this browser: ${error?.message ?? error}`);
    }
    this.faceMesh = faceMesh;
  }

  // The faces in the current picture of `video` once the calls before it are done:
  // { faces: [F][478][3] pixels (x·W, y·H, z·W, as FaceMeshTracker), sentAt: when this picture
  // was taken (performance.now() ms), ms: Face Mesh's own time for it }. No faces when the
  // video has no picture (stopped meanwhile).
  detect(video) {
    const run = this.queue.then(async () => {
      const sentAt = performance.now();
      if (video.readyState < 2) return { faces: [], sentAt, ms: 0 };
      this.results = null;
      await this.faceMesh.send({ image: video });
      const width = video.videoWidth;
      const height = video.videoHeight;
      const faces = (this.results?.multiFaceLandmarks ?? []).map((landmarks) =>
        landmarks.map((p) => [p.x * width, p.y * height, p.z * width]),
      );
      return { faces, sentAt, ms: performance.now() - sentAt };
    });
    this.queue = run.catch(() => undefined);
    return run;
  }
}
