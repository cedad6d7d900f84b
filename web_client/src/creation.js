// "Create my avatar": a guided recording from the webcam (MediaRecorder) with live checks and
// coverage, a review, the upload to POST /api/avatars, and the job's progress until the new
// avatar is served (docs/web_client.md, "Creating an avatar").
import { Coverage } from "./coverage.js";
import { requireWebGL2 } from "./facemesh.js";
import { cameraMessage } from "./sender.js";
import { ExpressionBasis, FaceLock } from "./tracking.js";
import { $, RequestError, api, config, status } from "./ui.js";

// What the person is asked to do, in order (45 s; docs/create.md says why each matters).
const SCRIPT = [
  { text: "Look at the camera with a relaxed face", seconds: 5, covers: "neutral" },
  { text: "Slowly turn your head to your left", seconds: 4, covers: "turn left" },
  { text: "…and to your right", seconds: 4, covers: "turn right" },
  { text: "Look up", seconds: 3, covers: "turn up" },
  { text: "Look down", seconds: 3, covers: "turn down" },
  { text: "Open your mouth wide", seconds: 3, covers: "mouth open" },
  { text: "Smile", seconds: 3, covers: "smile" },
  { text: "Raise your eyebrows", seconds: 3, covers: "brows raised" },
  { text: "Blink a few times", seconds: 3, covers: "blink" },
  { text: "Talk: count from one to ten", seconds: 8, covers: "talk" },
  { text: "Keep talking and look around slowly", seconds: 6, covers: null },
];
const SCRIPT_SECONDS = SCRIPT.reduce((sum, step) => sum + step.seconds, 0);
const GOOD_SECONDS = 30; // shorter clips make blurrier avatars
const CHECK_MS = 200; // how often the live checks run Face Mesh
const POLL_MS = 1000;
const JOB_KEY = "telepresence.creation-job"; // a reload follows the job on
const MIME_TYPES = ["video/webm;codecs=vp8", "video/webm;codecs=vp9", "video/webm", "video/mp4"];
const DARK = 60; // mean grey level of the face below this: too dark
const BRIGHT = 225;
const SMALL_FACE = 0.18; // face width / picture width below this: too far away

export class AvatarCreator {
  // `faceMesh`: the page's FaceMeshRunner; `onReady(avatarId, name)` once the avatar is served.
  constructor(faceMesh, { onReady }) {
    this.faceMesh = faceMesh;
    this.onReady = onReady;
    this.video = $("create-camera");
    this.stream = null;
    this.template = null;
    this.lock = new FaceLock();
    this.coverage = null;
    this.recorder = null;
    this.clip = null; // { blob, seconds, url }
    this.checkTimer = null;
    this.checking = false;
    this.opening = 0; // counts open() and close() calls: a stale open() stops what it started
    this.promptTimer = null;
    this.jobId = null;
    this.pollTimer = null;
    this.state = status.creation = { phase: "closed", check: null, coverage: null, seconds: 0, job: null };
    this.buildSteps();
  }

  // ---------------------------------------------------------------- the panel

  // Shows the panel; starts the camera and its checks unless something is under way already
  // (a recording, a review, an upload, a job followed, or a finished job's result).
  async open() {
    $("create").hidden = false;
    if (this.state.phase !== "closed") return;
    $("create-error").hidden = true;
    $("create-start").disabled = true; // until a face is seen
    this.show("setup");
    const attempt = ++this.opening;
    const stale = () => attempt !== this.opening;
    try {
      requireWebGL2("Checking the recording");
      this.template ??= await templateFor();
      if (stale()) return;
      await this.openCamera();
      if (stale()) return this.stopCamera();
      await this.faceMesh.start();
      if (stale()) return this.stopCamera();
    } catch (error) {
      if (!stale()) {
        this.stopCamera();
        this.show("closed"); // the header button tries again
        this.fail(error?.message ?? String(error));
      }
      return;
    }
    this.startChecks();
  }

  // Hides the panel: a recording or a clip under review is given up; a job goes on.
  close() {
    this.opening++;
    $("create").hidden = true;
    if (["job", "uploading", "finished"].includes(this.state.phase)) return;
    this.stopRecording(false);
    this.stopCamera();
    this.show("closed");
  }

  show(phase) {
    this.state.phase = phase;
    $("create-record").hidden = !["setup", "recording"].includes(phase);
    $("create-review").hidden = phase !== "review";
    $("create-job").hidden = !["uploading", "job", "finished"].includes(phase);
    $("create-start").hidden = phase !== "setup";
    $("create-stop").hidden = phase !== "recording";
    const next = { setup: "create-start", recording: "create-stop", review: "create-upload" }[phase];
    if (next && document.activeElement?.closest("#create")) $(next).focus(); // focus stays in the panel
  }

  fail(message) {
    const box = $("create-error");
    box.textContent = message;
    box.hidden = false;
    this.state.error = message;
  }

  buildSteps() {
    $("create-steps").replaceChildren(
      ...SCRIPT.map((step) => {
        const item = document.createElement("li");
        item.textContent = step.text;
        return item;
      }),
    );
  }

  // ---------------------------------------------------------------- camera and live checks

  async openCamera() {
    if (this.stream) return;
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        // 4:3 like the sender's camera: they share one Face Mesh, which tracks from frame to frame
        video: { width: { ideal: 1280 }, height: { ideal: 960 }, frameRate: { ideal: 30 } },
        audio: false,
      });
    } catch (error) {
      throw new RequestError(cameraMessage(error));
    }
    this.video.srcObject = this.stream;
    await this.video.play().catch(() => undefined);
  }

  startChecks() {
    clearInterval(this.checkTimer);
    this.checkTimer = setInterval(() => this.check(), CHECK_MS);
  }

  stopCamera() {
    clearInterval(this.checkTimer);
    this.checkTimer = null;
    this.stream?.getTracks().forEach((track) => track.stop());
    this.stream = null;
    this.video.srcObject = null;
  }

  async check() {
    if (this.checking || !this.stream || this.video.readyState < 2) return;
    this.checking = true;
    try {
      const { faces } = await this.faceMesh.detect(this.video);
      if (!this.stream) return; // closed meanwhile
      const width = this.video.videoWidth;
      const height = this.video.videoHeight;
      const followed = this.lock.select(
        faces.filter((points) => points.length === this.template.points.length),
        width,
        height,
        performance.now() / 1000,
      );
      const points = followed?.points ?? null;
      this.showCheck(points ? this.lighting(points) : { ok: false, text: "No face in view: sit in front of the camera." });
      if (points) $("create-start").disabled = false;
      if (points && this.recorder) this.coverage.add(points, performance.now() / 1000);
      if (this.recorder) this.showCoverage();
    } catch (error) {
      this.fail(`Face Mesh failed: ${error?.message ?? error}`);
    } finally {
      this.checking = false;
    }
  }

  // Is the face (landmarks `points` [L][3] pixels) well lit and big enough?
  lighting(points) {
    const width = this.video.videoWidth;
    const height = this.video.videoHeight;
    const xs = points.map((p) => p[0]);
    const ys = points.map((p) => p[1]);
    const box = { x0: Math.min(...xs), x1: Math.max(...xs), y0: Math.min(...ys), y1: Math.max(...ys) };
    if (box.x1 - box.x0 < SMALL_FACE * width) {
      return { ok: false, text: "Come closer: your face is small in the picture." };
    }
    if (box.x0 < 2 || box.y0 < 2 || box.x1 > width - 2 || box.y1 > height - 2) {
      return { ok: false, text: "Move back a little: your whole head should be in the picture." };
    }
    const grey = meanGrey(this.video, box, width, height);
    if (grey < DARK) return { ok: false, text: "Too dark: light your face from the front (a window or lamp behind the camera)." };
    if (grey > BRIGHT) return { ok: false, text: "Too bright: your face is washed out; move out of direct light." };
    return { ok: true, text: "Face found, light good" };
  }

  showCheck(check) {
    this.state.check = check.text;
    const badge = $("create-check");
    badge.textContent = check.text;
    badge.dataset.face = check.ok ? "tracking" : "none";
  }

  showCoverage() {
    const summary = this.coverage.summary();
    this.state.coverage = summary;
    $("create-coverage").textContent =
      `turns covered ${summary.turns}/${summary.turnsTotal}, expressions ${summary.expressions}/${summary.expressionsTotal}`;
    const covered = new Set([...[...this.coverage.turns].map((t) => `turn ${t}`), ...this.coverage.expressions]);
    [...$("create-steps").children].forEach((item, i) => {
      item.classList.toggle("done", SCRIPT[i].covers !== null && covered.has(SCRIPT[i].covers));
    });
  }

  // ---------------------------------------------------------------- recording

  startRecording() {
    if (this.recorder || !this.stream) return;
    const mimeType = MIME_TYPES.find((type) => MediaRecorder.isTypeSupported(type));
    if (!mimeType) {
      this.fail("This browser cannot record video (MediaRecorder supports neither webm nor mp4).");
      return;
    }
    $("create-error").hidden = true;
    this.coverage = new Coverage(this.template);
    const chunks = [];
    const recorder = new MediaRecorder(this.stream, { mimeType, videoBitsPerSecond: 2_500_000 });
    this.recorder = recorder;
    recorder.ondataavailable = (event) => {
      if (event.data.size) chunks.push(event.data);
    };
    recorder.onstop = () => {
      if (this.recorder === recorder) {
        this.interrupted(); // nobody asked: the camera went away
      } else if (recorder.keep) {
        this.recorded(new Blob(chunks, { type: mimeType.split(";")[0] }), recorder.seconds);
      }
    };
    recorder.onerror = () => this.interrupted();
    this.startedAt = performance.now();
    recorder.start(1000);
    this.show("recording");
    this.showCoverage();
    const limit = Math.min(SCRIPT_SECONDS, (config.avatar_creation?.max_video_seconds ?? SCRIPT_SECONDS) - 1);
    // a recorded webm comes out a little shorter than the wall clock: one second of margin
    const minimum = (config.avatar_creation?.min_video_seconds ?? 3) + 1;
    $("create-stop").disabled = true;
    this.promptTimer = setInterval(() => {
      const seconds = (performance.now() - this.startedAt) / 1000;
      this.state.seconds = seconds;
      $("create-time").value = Math.min(seconds / SCRIPT_SECONDS, 1);
      $("create-time-text").textContent = `${seconds.toFixed(0)} s of ${SCRIPT_SECONDS} s`;
      $("create-stop").disabled = seconds < minimum;
      this.showPrompt(seconds);
      if (seconds >= limit) this.stopRecording(true);
    }, 250);
  }

  showPrompt(seconds) {
    let until = 0;
    const index = SCRIPT.findIndex((step) => (until += step.seconds) > seconds);
    const current = index < 0 ? SCRIPT.length - 1 : index;
    $("create-prompt").textContent = SCRIPT[current].text;
    [...$("create-steps").children].forEach((item, i) => item.classList.toggle("current", i === current));
  }

  // `keep`: show the clip for review (else it is thrown away: the panel closed)
  stopRecording(keep) {
    clearInterval(this.promptTimer);
    this.promptTimer = null;
    const recorder = this.recorder;
    if (!recorder) return;
    this.recorder = null;
    recorder.keep = keep;
    recorder.seconds = (performance.now() - this.startedAt) / 1000;
    if (recorder.state !== "inactive") recorder.stop();
  }

  // The recorder stopped by itself (camera unplugged, permission taken back).
  interrupted() {
    clearInterval(this.promptTimer);
    this.promptTimer = null;
    this.recorder = null;
    this.stopCamera();
    this.show("closed");
    this.open(); // its synchronous start clears the error box: say it after
    this.fail("The recording stopped: the camera went away. Check it and record again.");
  }

  recorded(blob, seconds) {
    clearInterval(this.checkTimer); // no live checks while the clip is reviewed
    this.checkTimer = null;
    if (this.clip) URL.revokeObjectURL(this.clip.url);
    this.clip = { blob, seconds, url: URL.createObjectURL(blob) };
    $("create-clip").src = this.clip.url;
    const summary = this.coverage.summary();
    this.state.coverage = summary;
    const advice = [];
    if (this.clip.seconds < GOOD_SECONDS) advice.push(`clips of ${GOOD_SECONDS}–60 s make sharper avatars`);
    if (summary.missing.length) advice.push(`not seen: ${summary.missing.join(", ")}`);
    $("create-summary").textContent =
      `${this.clip.seconds.toFixed(0)} s, ${(blob.size / 2 ** 20).toFixed(1)} MB · turns covered ` +
      `${summary.turns}/${summary.turnsTotal}, expressions ${summary.expressions}/${summary.expressionsTotal}` +
      (advice.length ? ` · ${advice.join("; ")}. Record again for a better avatar, or keep it.` : " · all covered.");
    this.show("review");
  }

  // ---------------------------------------------------------------- upload and the job

  async upload() {
    const name = $("create-name").value.trim();
    const limits = config.avatar_creation;
    if (limits && !new RegExp(`^(?:${limits.name_pattern})$`).test(name)) {
      this.fail("Give the avatar a name: 1–40 letters, digits, spaces, '.', '_' or '-', starting with a letter or digit.");
      return;
    }
    if (limits && this.clip.blob.size > limits.max_upload_bytes) {
      this.fail(`The clip is ${(this.clip.blob.size / 2 ** 20).toFixed(0)} MB; this server takes at most ${(limits.max_upload_bytes / 2 ** 20).toFixed(0)} MB. Record a shorter one.`);
      return;
    }
    const form = new FormData();
    form.append("name", name); // name and token come before the video (the server checks them first)
    const token = $("token").value.trim();
    if (token) form.append("token", token);
    const extension = this.clip.blob.type === "video/mp4" ? "mp4" : "webm";
    form.append("video", this.clip.blob, `recording.${extension}`);
    $("create-error").hidden = true;
    this.show("uploading");
    $("create-stage").textContent = `Uploading ${(this.clip.blob.size / 2 ** 20).toFixed(1)} MB…`;
    $("create-use").hidden = true;
    $("create-cancel").hidden = true;
    try {
      const { job } = await api("/api/avatars", { method: "POST", body: form });
      this.stopCamera();
      URL.revokeObjectURL(this.clip.url);
      this.clip = null;
      this.follow(job.id);
    } catch (error) {
      this.show("review");
      this.fail(`The upload was refused: ${error?.message ?? error}`);
    }
  }

  follow(jobId) {
    this.jobId = jobId;
    localStorage.setItem(JOB_KEY, jobId);
    this.show("job");
    $("create-cancel").hidden = false;
    clearTimeout(this.pollTimer);
    const poll = async () => {
      if (this.jobId !== jobId) return; // another job is followed now
      try {
        const { job } = await api(`/api/jobs/${encodeURIComponent(jobId)}`);
        if (this.jobId !== jobId) return;
        this.showJob(job);
        if (["done", "failed", "cancelled"].includes(job.state)) return this.finished(job);
      } catch (error) {
        if (error.status === 404) {
          $("create-stage").textContent = "The server no longer knows this job.";
          return this.finished(null);
        }
        $("create-eta").textContent = `${error.message} (retrying)`;
      }
      this.pollTimer = setTimeout(poll, POLL_MS);
    };
    poll();
  }

  showJob(job) {
    this.state.job = job;
    const percent = Math.round(job.percent ?? 0);
    let stage;
    if (job.state === "queued") {
      const ahead = job.queue_position ?? 0;
      stage = `Waiting for the server: ${ahead} job${ahead === 1 ? "" : "s"} ahead of yours`;
    } else if (job.state === "running") {
      stage = `Creating “${job.name}”: ${job.stage || "starting"}`;
    } else if (job.state === "done") {
      stage = `Your avatar “${job.name}” is ready.`;
    } else if (job.state === "failed") {
      stage = `Creating “${job.name}” failed: ${job.error}`;
    } else {
      stage = `Cancelled${job.error ? ` (${job.error})` : ""}.`;
    }
    $("create-stage").textContent = stage;
    $("create-percent").value = percent;
    $("create-percent-text").textContent = `${percent} %`;
    $("create-eta").textContent =
      job.state === "running" && job.eta_s != null ? `about ${formatDuration(job.eta_s)} left` : "";
    $("create-open").textContent = job.state === "running" || job.state === "queued" ? `Creating… ${percent} %` : "Create my avatar";
  }

  // The job's result stays in the panel (also when it ended while closed) until Record again.
  async finished(job) {
    this.jobId = null;
    localStorage.removeItem(JOB_KEY);
    this.show("finished");
    $("create-cancel").hidden = true;
    $("create-open").textContent = "Create my avatar";
    $("create-again-after").hidden = false;
    if (job?.state !== "done") return;
    const switched = await this.onReady(job.avatar_id, job.name, false);
    if (!switched) {
      $("create-use").textContent = `Appear as ${job.name}`;
      $("create-use").hidden = false;
      $("create-use").onclick = async () => {
        $("create-use").hidden = true;
        this.close();
        await this.onReady(job.avatar_id, job.name, true);
      };
    }
  }

  async cancel() {
    if (!this.jobId) return;
    const token = $("token").value.trim();
    const query = token ? `?token=${encodeURIComponent(token)}` : "";
    try {
      await api(`/api/jobs/${encodeURIComponent(this.jobId)}${query}`, { method: "DELETE" });
    } catch (error) {
      this.fail(error.message);
    }
  }

  // A reload while a job runs follows it on.
  resume() {
    const jobId = localStorage.getItem(JOB_KEY);
    if (!jobId) return;
    $("create").hidden = false;
    this.follow(jobId);
  }

  async recordAgain() {
    clearTimeout(this.pollTimer);
    this.jobId = null;
    $("create-again-after").hidden = true;
    $("create-use").hidden = true;
    if (this.state.phase === "review") {
      this.show("setup");
      this.startChecks(); // the camera is still open
      return;
    }
    this.show("closed");
    await this.open();
  }
}

// The face template every avatar's basis shares, for the checks (the first avatar's).
async function templateFor() {
  const { avatars } = await api("/api/avatars");
  if (!avatars.length) throw new RequestError("The server serves no avatar yet, so the page has no face template to check the recording with.");
  const json = await api(`/api/avatars/${encodeURIComponent(avatars[0].id)}/encoder`);
  return new ExpressionBasis(json).template;
}

// Mean grey level (0..255) of `video` inside `box` (pixels), from a 64 px wide copy.
function meanGrey(video, box, width, height) {
  const scale = 64 / width;
  const canvas = document.createElement("canvas");
  canvas.width = 64;
  canvas.height = Math.max(1, Math.round(height * scale));
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(video, 0, 0, canvas.width, canvas.height);
  const x0 = Math.max(0, Math.floor(box.x0 * scale));
  const y0 = Math.max(0, Math.floor(box.y0 * scale));
  const w = Math.max(1, Math.min(canvas.width - x0, Math.ceil((box.x1 - box.x0) * scale)));
  const h = Math.max(1, Math.min(canvas.height - y0, Math.ceil((box.y1 - box.y0) * scale)));
  const rgba = context.getImageData(x0, y0, w, h).data;
  let sum = 0;
  for (let i = 0; i < rgba.length; i += 4) sum += 0.299 * rgba[i] + 0.587 * rgba[i + 1] + 0.114 * rgba[i + 2];
  return sum / (rgba.length / 4);
}

function formatDuration(seconds) {
  if (seconds < 90) return `${Math.max(1, Math.round(seconds))} s`;
  return `${Math.round(seconds / 60)} min`;
}

