// The browser client: viewer (every avatar of a room as live video, with stats) and sender
// (webcam -> Face Mesh -> ExpressionFrames on the `expr` data channel). docs/web_client.md.
// Modules: ui.js (config, status, helpers, the HTTP API), seats.js, session.js (the
// connection), sender.js, facemesh.js (the page's one Face Mesh), creation.js (create my
// avatar) with coverage.js, tracking.js (the tracking math, parity-tested against npga.tracking).
import { AvatarCreator } from "./creation.js";
import { FaceMeshRunner } from "./facemesh.js";
import { Sender } from "./sender.js";
import { Session } from "./session.js";
import { $, api, config, mode, params, setState, showDriving, showError } from "./ui.js";

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

// ---------------------------------------------------------------- wiring

let session = null;
let sender = null;
const faceMesh = new FaceMeshRunner();

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
      sender = new Sender(session, faceMesh);
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
  $("create-hint").hidden = !config.avatar_creation;
  if (config.avatar_creation) wireCreation();
  if (params.get("autojoin") === "1") join();
}

// A new avatar is served: it joins the menu; a sender switches to it at once (returns true),
// anyone else when they press "Appear as …" (`appear`).
async function avatarReady(avatarId, name, appear) {
  await loadAvatars();
  $("avatar").value = avatarId;
  if (sender && session?.role === "sender") {
    if (session.avatar !== avatarId) {
      await sender.switchAvatar(avatarId).catch((error) => showError(error.message));
      showDriving(session.avatar);
    }
    return true;
  }
  if (appear) {
    document.querySelector('input[name="mode"][value="sender"]').checked = true;
    await join();
  }
  return false;
}

function wireCreation() {
  const creator = new AvatarCreator(faceMesh, { onReady: avatarReady });
  $("create-open").hidden = false;
  $("create-open").addEventListener("click", () => creator.open());
  $("create-close").addEventListener("click", () => creator.close());
  $("create-start").addEventListener("click", () => creator.startRecording());
  $("create-stop").addEventListener("click", () => creator.stopRecording(true));
  $("create-upload").addEventListener("click", () => creator.upload());
  $("create-again").addEventListener("click", () => creator.recordAgain());
  $("create-again-after").addEventListener("click", () => creator.recordAgain());
  $("create-cancel").addEventListener("click", () => creator.cancel());
  creator.resume();
}

init();
