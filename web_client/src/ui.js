// Shared by the page's modules: the server's config, the status the tests read, DOM helpers
// and the one way to call the server's HTTP API (docs/web_client.md).

// What the page and the server must agree on comes from the server (GET /api/config): the video
// seats to receive (Limits.video_seats; seats follow the room's join order, a sender's own
// avatar is one of them and is shown first), the room-name pattern, the ctrl message types.
export const config = {
  video_seats: 4,
  room_name_pattern: "^[A-Za-z0-9_-]{1,64}$",
  ctrl_requests: [],
  ctrl_replies: [],
};

export const $ = (id) => document.getElementById(id);
export const params = new URLSearchParams(location.search);

// What the tests (and a curious user in the console) can read.
export const status = {
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

export class RequestError extends Error {
  constructor(message, { status: httpStatus = 0, retry = false } = {}) {
    super(message);
    this.status = httpStatus;
    this.retry = retry;
  }
}

// ---------------------------------------------------------------- UI helpers

export function showError(message) {
  status.error = message;
  const box = $("error");
  box.textContent = message ?? "";
  box.hidden = !message;
}

export function setState(state, text) {
  status.state = state;
  const badge = $("state");
  badge.dataset.state = state;
  badge.textContent = text ?? state;
}

export function mode() {
  return document.querySelector('input[name="mode"]:checked').value;
}

export async function api(path, options = {}) {
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

// Face Mesh slower than a 30 fps frame (33 ms) on this device: say what that costs.
const SLOW_TRACKING_MS = 50;
export function showSlowTracking(ms) {
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
export function showDriving(avatarId) {
  $("driving").textContent = `You are driving: ${avatarId}`;
}

export function setFace(state, text) {
  const badge = $("face");
  badge.dataset.face = state;
  badge.textContent = text;
}
