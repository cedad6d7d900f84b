// Runs the browser sender's FaceLock (src/tracking.js) on the frames written by
// tests/test_js_facelock.py and writes, per frame, the centre of the face it followed.
// Usage: node test/run_facelock.mjs INPUT.json OUT.json
import { readFileSync, writeFileSync } from "node:fs";

import { FaceLock } from "../src/tracking.js";

const [inputPath, outPath] = process.argv.slice(2);
const input = JSON.parse(readFileSync(inputPath, "utf8"));
const lock = new FaceLock();
const results = input.frames.map(({ faces, timestamp }) => {
  const chosen = lock.select(faces, input.width, input.height, timestamp);
  if (chosen === null) return null;
  const xs = chosen.points.map((p) => p[0]);
  const ys = chosen.points.map((p) => p[1]);
  const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;
  return { centre: [mean(xs), mean(ys)], continuity: chosen.continuity };
});
writeFileSync(outPath, JSON.stringify(results));
