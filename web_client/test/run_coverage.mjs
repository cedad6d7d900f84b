// Runs the recording checks (src/coverage.js) on landmark sequences written by
// tests/test_js_coverage.py (at `fps` frames a second) and writes what they measured.
// Usage: node test/run_coverage.mjs INPUT.json OUT.json
import { readFileSync, writeFileSync } from "node:fs";

import { Coverage } from "../src/coverage.js";
import { ExpressionBasis } from "../src/tracking.js";

const [inputPath, outPath] = process.argv.slice(2);
const input = JSON.parse(readFileSync(inputPath, "utf8"));
const template = new ExpressionBasis(input.basis).template;
const results = input.sequences.map((frames) => {
  const coverage = new Coverage(template, input.calibration_frames);
  const turns = frames.map((points, k) => coverage.add(points, k / input.fps));
  return { turns, summary: coverage.summary() };
});
writeFileSync(outPath, JSON.stringify(results));
