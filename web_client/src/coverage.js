// What a recording for `npga create` covers: the head turns and the expressions an avatar is
// trained on (docs/create.md, "Recording the clip"), measured on Face Mesh landmarks against the
// person's own neutral (the first frames, as the sender calibrates). A plain ES module with no
// browser APIs.
import { NeutralCalibrator, canonicalize } from "./tracking.js";

export const TURNS = ["left", "right", "up", "down"];
export const EXPRESSIONS = ["neutral", "mouth open", "smile", "brows raised", "blink", "talk"];

const TURN_DEGREES = { left: 15, right: 15, up: 10, down: 10 };
// Face Mesh landmarks (the 468-point topology; the 10 iris points follow)
const LIP_UPPER = 13;
const LIP_LOWER = 14;
const MOUTH_RIGHT = 61;
const MOUTH_LEFT = 291;
const EYE_RIGHT_OUTER = 33;
const EYE_LEFT_OUTER = 263;
const EYELIDS = [[159, 145], [386, 374]]; // [upper, lower] per eye
// [brow, eye corners] per side: the brow's height over the eye's corners, which a blink keeps
const BROWS_OVER_EYES = [[105, [33, 133]], [334, [362, 263]]];
// Thresholds against the neutral, in eye-corner distances (≈ 9 cm on an adult) or ratios
const MOUTH_OPEN = 0.12;
const TALK_OPEN = 0.05;
const TALK_CLOSED = 0.02;
const TALK_CYCLES = 3; // open-close cycles within TALK_SECONDS
const TALK_SECONDS = 4;
const SMILE_WIDTH = 1.08;
const BROWS_UP = 0.035;
const BLINK_OPEN = 0.45;
const BLINK_FRONTAL_DEGREES = 8; // looking down narrows the eyes too: blinks count facing ahead

const distance = (a, b) => Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
const midpoint = (a, b) => [0, 1, 2].map((k) => 0.5 * (a[k] + b[k]));
const mean = (values) => values.reduce((s, v) => s + v, 0) / values.length;

// Mouth gap, mouth width, eye opening and brow height of canonical landmarks, in eye-corner
// distances.
function measures(c) {
  const unit = distance(c[EYE_RIGHT_OUTER], c[EYE_LEFT_OUTER]);
  return {
    gap: distance(c[LIP_UPPER], c[LIP_LOWER]) / unit,
    width: distance(c[MOUTH_RIGHT], c[MOUTH_LEFT]) / unit,
    eyes: mean(EYELIDS.map(([a, b]) => distance(c[a], c[b]))) / unit,
    brows: mean(BROWS_OVER_EYES.map(([brow, [i, j]]) => distance(c[brow], midpoint(c[i], c[j])))) / unit,
  };
}

// Yaw (+ = towards the person's left) and pitch (+ = up) in degrees of the head rotation
// `rotation` [3][3] relative to `neutral` [3][3] (template -> image, image axes x right, y down,
// z away from the camera): the face's forward direction is -z at the neutral.
export function turnDegrees(rotation, neutral) {
  const relative = (row) => rotation[row].reduce((s, v, k) => s + v * neutral[2][k], 0);
  const [x, y, z] = [relative(0), relative(1), relative(2)];
  const degrees = 180 / Math.PI;
  return { yaw: Math.atan2(-x, z) * degrees, pitch: Math.asin(Math.max(-1, Math.min(1, y))) * degrees };
}

// The mean of rotations [N][3][3] (close to each other), made orthonormal again (Gram-Schmidt).
function meanRotation(rotations) {
  const sum = [0, 1, 2].map((i) => [0, 1, 2].map((j) => mean(rotations.map((r) => r[i][j]))));
  const normal = (v) => v.map((x) => x / Math.hypot(...v));
  const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  const x = normal(sum[0]);
  const y = normal(sum[1].map((v, k) => v - dot(sum[1], x) * x[k]));
  const z = [x[1] * y[2] - x[2] * y[1], x[2] * y[0] - x[0] * y[2], x[0] * y[1] - x[1] * y[0]];
  return [x, y, z];
}

export class Coverage {
  // `template`: the expression basis's FaceTemplate ({points [L][3], weights [L]}).
  constructor(template, calibrationFrames = 10) {
    this.template = template;
    this.calibrator = new NeutralCalibrator(calibrationFrames);
    this.neutral = null; // { rotation, measures }
    this.turns = new Set();
    this.expressions = new Set();
    this.talkOpen = false;
    this.talkCycles = []; // when each open-close cycle of the mouth ended (seconds)
    this.rotations = []; // the calibration frames' head rotations
    this.last = null;
  }

  // One frame's landmarks `points` [L][3] (pixels) at `timestamp` (seconds): what it adds.
  // Returns the head's turn ({yaw, pitch} degrees) once the neutral is known, else null.
  add(points, timestamp) {
    const { pose, canonical } = canonicalize(points, this.template);
    if (this.neutral === null) {
      this.rotations.push(pose.rotation);
      const neutral = this.calibrator.add(canonical);
      if (neutral === null) return null;
      this.neutral = { rotation: meanRotation(this.rotations), measures: measures(neutral) };
      this.expressions.add("neutral");
    }
    const turn = turnDegrees(pose.rotation, this.neutral.rotation);
    if (turn.yaw >= TURN_DEGREES.left) this.turns.add("left");
    if (-turn.yaw >= TURN_DEGREES.right) this.turns.add("right");
    if (turn.pitch >= TURN_DEGREES.up) this.turns.add("up");
    if (-turn.pitch >= TURN_DEGREES.down) this.turns.add("down");
    const now = measures(canonical);
    const rest = this.neutral.measures;
    const opened = now.gap - rest.gap;
    if (opened >= MOUTH_OPEN) this.expressions.add("mouth open");
    if (now.width >= SMILE_WIDTH * rest.width) this.expressions.add("smile");
    if (now.brows - rest.brows >= BROWS_UP) this.expressions.add("brows raised");
    const frontal = Math.abs(turn.pitch) < BLINK_FRONTAL_DEGREES && Math.abs(turn.yaw) < 2 * BLINK_FRONTAL_DEGREES;
    if (frontal && now.eyes <= BLINK_OPEN * rest.eyes) this.expressions.add("blink");
    if (!this.talkOpen && opened >= TALK_OPEN) this.talkOpen = true;
    if (this.talkOpen && opened <= TALK_CLOSED) {
      this.talkOpen = false;
      this.talkCycles = [...this.talkCycles, timestamp].filter((t) => timestamp - t <= TALK_SECONDS);
      if (this.talkCycles.length >= TALK_CYCLES) this.expressions.add("talk");
    }
    this.last = turn;
    return turn;
  }

  summary() {
    return {
      turns: this.turns.size,
      turnsTotal: TURNS.length,
      expressions: this.expressions.size,
      expressionsTotal: EXPRESSIONS.length,
      missing: [
        ...TURNS.filter((t) => !this.turns.has(t)).map((t) => `turn ${t}`),
        ...EXPRESSIONS.filter((e) => !this.expressions.has(e)),
      ],
    };
  }
}
