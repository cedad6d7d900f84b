// Runs the browser sender's tracking (src/tracking.js) on vectors written by
// tests/test_js_parity.py and writes what it computed, for Python to compare.
// Usage: node test/run_parity.mjs VECTORS.json OUT.json
import { readFileSync, writeFileSync } from "node:fs";

import {
  ExpressionBasis,
  ExpressionTracker,
  decodeFrame,
  encodeFrame,
  frameFlags,
  toFloat16Bits,
} from "../src/tracking.js";

const [vectorsPath, outPath] = process.argv.slice(2);
const vectors = JSON.parse(readFileSync(vectorsPath, "utf8"));
const tracker = new ExpressionTracker(new ExpressionBasis(vectors.basis), {
  calibrationFrames: vectors.calibration_frames,
});
const hex = (buffer) => Buffer.from(buffer).toString("hex");

const frames = vectors.frames.map((input, seq) => {
  if (input.recalibrate) tracker.recalibrate();
  const state = tracker.process(input.points, input.t, input.continuity ?? 0);
  const bytes = encodeFrame({ seq, timestamp: input.t, ...state, flags: frameFlags(state) });
  return {
    flags: frameFlags(state),
    rotation: state.rotation,
    translation: state.translation,
    gaze: state.gaze,
    code: state.code,
    bytes: hex(bytes),
    decoded_code: decodeFrame(bytes).code,
  };
});
// The wire encoder alone, on Python's own frame values: the bytes must be identical.
const encoded = vectors.encode_cases.map((c) => hex(encodeFrame(c)));
const float16 = vectors.float16_values.map(toFloat16Bits);
writeFileSync(outPath, JSON.stringify({ frames, encoded, float16 }));
