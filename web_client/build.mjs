// Builds dist/: the page's own files from src/, Face Mesh's script, wasm and model files from the
// installed npm package (node_modules/@mediapipe/face_mesh), and the Janus JavaScript library
// with the WebRTC adapter it expects (janus-gateway, webrtc-adapter: viewers of a room whose
// media is in the SFU), so that the server serves every asset itself (no CDN). Run by
// `npm run build` (the Makefile's install target).
import { copyFileSync, existsSync, mkdirSync, readdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, "dist");
const faceMesh = join(root, "node_modules", "@mediapipe", "face_mesh");
const FACE_MESH_FILES = /\.(js|wasm|data|binarypb|tflite)$/;

if (!existsSync(faceMesh)) {
  console.error("node_modules/@mediapipe/face_mesh is missing: run `npm ci` in web_client first");
  process.exit(1);
}
rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, "mediapipe"), { recursive: true });
for (const name of readdirSync(join(root, "src"))) {
  copyFileSync(join(root, "src", name), join(dist, name));
}
const copied = readdirSync(faceMesh).filter((name) => FACE_MESH_FILES.test(name));
for (const name of copied) copyFileSync(join(faceMesh, name), join(dist, "mediapipe", name));
mkdirSync(join(dist, "janus"), { recursive: true });
const JANUS_FILES = [
  ["janus-gateway/dist/janus.es.js", "janus.es.js"],
  ["webrtc-adapter/out/adapter.js", "adapter.js"],
];
for (const [from, to] of JANUS_FILES) copyFileSync(join(root, "node_modules", from), join(dist, "janus", to));
console.log(`web client built in ${dist} (${copied.length} Face Mesh files, the Janus library)`);
