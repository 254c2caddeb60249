// The browser half of the Camera widget: getUserMedia -> canvas -> JPEG blob -> binary comm buffer, or in browser
// analysis mode getUserMedia -> canvas -> MediaPipe FaceLandmarker (wasm, in this page) -> packed face -> buffer.
// Back-pressure: at most `max_in_flight` messages await the kernel's ack; ticks beyond that are skipped.
// Browser analysis batches: packed faces gather in a FaceBatch and go as one message every `batch_seconds` (the
// newest `max_batch` of them); a message costs the kernel and the server ~2 ms whatever it carries. The kernel
// analyses a batch as it arrives, so its "idle" status for the message is the batch's ack (an ack message comes
// only for a refused batch), and the page's counters ride on a batch every BATCH_STATS_MS. While the kernel
// offers serve's face pipe, batches go through it instead (FacePipe), each acked on it.

const STALE_MS = 5000; // an ack lost with a restarted kernel must not freeze the window forever
// How often the page's counters reach the kernel: a widget update every second for pictures; with batches, on
// the next batch every 5 s, whose point is few messages.
const STATS_MS = 1000;
const BATCH_STATS_MS = 5000;
// The landmarker's speed is judged over this many frames (the first ones include warm-up, so a window).
const SPEED_WINDOW = 10;

// The packed face of smartsession/vision/packed.py (its docstring documents the layout).
const PACKED_MAGIC = [0x53, 0x53, 0x46, 0x31]; // "SSF1"
const HEADER_BYTES = 24;
const N_BLENDSHAPES = 52;

function extremes(points) {
  const out = [0, 0, 0, 0]; // min x, min y, max x, max y
  for (let i = 1; i < points.length; i++) {
    const p = points[i];
    if (p.x < points[out[0]].x) out[0] = i;
    if (p.y < points[out[1]].y) out[1] = i;
    if (p.x > points[out[2]].x) out[2] = i;
    if (p.y > points[out[3]].y) out[3] = i;
  }
  return out;
}

// One frame's face as the landmarker gave it (from the whole frame or a crop mapped back to it), or no face.
function faceOf(result, faces, score, points = null) {
  const found = result !== null && result.faceLandmarks.length > 0;
  return {
    points: found ? points || result.faceLandmarks[0] : null,
    shapes: found && result.faceBlendshapes.length ? result.faceBlendshapes[0].categories : [],
    matrix: found && result.facialTransformationMatrixes.length ? result.facialTransformationMatrixes[0] : null,
    faces: found ? Math.max(1, faces) : 0,
    score,
  };
}

function packFace(face, t, width, height, featureIndices) {
  const { points, shapes, matrix } = face;
  const usable = points && shapes.length === N_BLENDSHAPES && matrix && matrix.data.length === 16;
  const indices = usable ? [...new Set([...featureIndices, ...extremes(points)])].sort((a, b) => a - b) : [];
  const n = indices.length;
  const pad = (4 - ((HEADER_BYTES + 2 * n) % 4)) % 4;
  const size = n ? HEADER_BYTES + 2 * n + pad + 4 * (3 * n + N_BLENDSHAPES + 16) : HEADER_BYTES;
  const buffer = new ArrayBuffer(size);
  const view = new DataView(buffer);
  PACKED_MAGIC.forEach((b, i) => view.setUint8(i, b));
  view.setFloat64(4, t, true);
  view.setUint16(12, width, true);
  view.setUint16(14, height, true);
  view.setUint8(16, n ? Math.min(face.faces, 16) : 0);
  view.setUint16(18, n, true);
  // The detector's score when the small-face search found the face; NaN from the landmarker, as in Python.
  view.setFloat32(20, n ? face.score : NaN, true);
  if (!n) return buffer;
  let at = HEADER_BYTES;
  for (const i of indices) (view.setUint16(at, i, true), (at += 2));
  at += pad;
  for (const i of indices) {
    const p = points[i];
    for (const v of [p.x, p.y, p.z]) (view.setFloat32(at, v, true), (at += 4));
  }
  const byIndex = [...shapes].sort((a, b) => a.index - b.index);
  for (const c of byIndex) (view.setFloat32(at, c.score, true), (at += 4));
  // MediaPipe's matrix data is column-major; the message is row-major, as Python reads it.
  for (let r = 0; r < 4; r++) for (let c = 0; c < 4; c++) (view.setFloat32(at, matrix.data[c * 4 + r], true), (at += 4));
  return buffer;
}

// The small-face search and the face count of smartsession/vision/landmarks.py in stream mode, step for step and
// with its constants, so that a far student is found here as in the kernel (docs/ANALYSIS.md gives the reasons).
const CROP_SCALE = 2.2;
const CROP_MIN_SIDE = 256;
const TILE_SHARE = 0.5;
const SEARCH_INTERVAL_MS = 500;
const COUNT_INTERVAL_MS = 1000;
const SEARCH_MIN_SCORE = 0.7;
const SAME_FACE_IOU = 0.3;
const MIN_CONFIDENCE = 0.5;

// Square tiles [x0, y0, side] covering the frame, neighbours overlapping by half a tile.
function tiles(width, height, share = TILE_SHARE) {
  const side = Math.max(16, Math.floor(Math.min(width, height) * share));
  const step = Math.floor(side / 2);
  const starts = (extent) => {
    if (extent <= side) return [0];
    const out = [];
    for (let s = 0; s < extent - side; s += step) out.push(s);
    return [...out, extent - side];
  };
  const out = [];
  for (const y of starts(height)) for (const x of starts(width)) out.push([x, y, side]);
  return out;
}

function iou(a, b) {
  const iw = Math.max(0, Math.min(a[0] + a[2], b[0] + b[2]) - Math.max(a[0], b[0]));
  const ih = Math.max(0, Math.min(a[1] + a[3], b[1] + b[3]) - Math.max(a[1], b[1]));
  const union = a[2] * a[3] + b[2] * b[3] - iw * ih;
  return union > 0 ? (iw * ih) / union : 0;
}

const within = (since, ms, interval) => since !== null && ms - since >= 0 && ms - since < interval;

class FaceFinder {
  // The landmarker (VIDEO mode, tracking), a landmarker for crops of small faces (IMAGE mode) and the face
  // detector, all from the model file the kernel uses; `paths` are the asset URLs the server gives.
  static async create(paths) {
    if (typeof WebAssembly !== "object") throw new Error("this browser has no WebAssembly");
    // The server gives paths; this module runs from a blob: URL, against which they would not resolve.
    const urls = Object.fromEntries(Object.entries(paths).map(([k, v]) => [k, new URL(v, document.baseURI).href]));
    const vision = await import(urls["vision_bundle.mjs"]);
    const simd = await vision.FilesetResolver.isSimdSupported();
    const wasm = simd ? "vision_wasm_internal" : "vision_wasm_nosimd_internal";
    const fileset = { wasmLoaderPath: urls[`${wasm}.js`], wasmBinaryPath: urls[`${wasm}.wasm`] };
    const landmarker = (runningMode) => vision.FaceLandmarker.createFromOptions(fileset, {
      baseOptions: { modelAssetPath: urls["face_landmarker.task"], delegate: "CPU" },
      runningMode,
      numFaces: 1,
      minFaceDetectionConfidence: MIN_CONFIDENCE,
      minFacePresenceConfidence: MIN_CONFIDENCE,
      minTrackingConfidence: MIN_CONFIDENCE,
      outputFaceBlendshapes: true,
      outputFacialTransformationMatrixes: true,
    });
    const detector = vision.FaceDetector.createFromOptions(fileset, {
      baseOptions: { modelAssetPath: urls["face_detector.tflite"], delegate: "CPU" },
      runningMode: "IMAGE",
      minDetectionConfidence: MIN_CONFIDENCE,
    });
    return new FaceFinder(...(await Promise.all([landmarker("VIDEO"), landmarker("IMAGE"), detector])));
  }

  constructor(main, crop, detector) {
    this.main = main;
    this.crop = crop;
    this.detector = detector;
    this.scratch = document.createElement("canvas"); // tiles and crops are drawn here
    this.scratchCtx = this.scratch.getContext("2d", { willReadFrequently: true });
    this.lastMs = 0;
    this.lastCountMs = null;
    this.lastSearchMs = null;
    this.count = 0;
    this.roi = null; // the small face being followed: [x, y, w, h, score] as shares of the frame
  }

  close() {
    for (const task of [this.main, this.crop, this.detector]) task.close();
  }

  // Detector boxes [x, y, w, h, score] on `source` drawn at (x0, y0) of a frame of width x height, as shares of it.
  detections(source, x0, y0, width, height) {
    return this.detector.detect(source).detections.map((d) => {
      const b = d.boundingBox;
      return [(b.originX + x0) / width, (b.originY + y0) / height, b.width / width, b.height / height,
        d.categories[0].score];
    });
  }

  // Faces anywhere in the frame, the small ones included: the whole frame, then overlapping tiles; largest first.
  search(canvas) {
    const { width, height } = canvas;
    const boxes = this.detections(canvas, 0, 0, width, height);
    for (const [x, y, side] of tiles(width, height)) {
      this.scratch.width = side;
      this.scratch.height = side;
      this.scratchCtx.drawImage(canvas, x, y, side, side, 0, 0, side, side);
      for (const box of this.detections(this.scratch, x, y, width, height)) {
        if (box[4] >= SEARCH_MIN_SCORE && boxes.every((b) => iou(box, b) < SAME_FACE_IOU)) boxes.push(box);
      }
    }
    return boxes.sort((a, b) => b[2] * b[3] - a[2] * a[3]);
  }

  // The crop landmarker on a square around `box`, enlarged so the whole head is in it, padded where it leaves the
  // frame and upscaled when small; its landmarks mapped back to the whole frame.
  onCrop(canvas, box) {
    const { width: w, height: h } = canvas;
    const cx = (box[0] + box[2] / 2) * w;
    const cy = (box[1] + box[3] / 2) * h;
    const s = Math.max(2, Math.round(Math.max(box[2] * w, box[3] * h) * CROP_SCALE));
    const x0 = Math.round(cx - s / 2);
    const y0 = Math.round(cy - s / 2);
    const [sx0, sy0, sx1, sy1] = [Math.max(0, x0), Math.max(0, y0), Math.min(w, x0 + s), Math.min(h, y0 + s)];
    if (sx1 <= sx0 || sy1 <= sy0) return null;
    const side = Math.max(s, CROP_MIN_SIDE);
    const k = side / s;
    this.scratch.width = side;
    this.scratch.height = side;
    const ctx = this.scratchCtx;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, side, side);
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(canvas, sx0, sy0, sx1 - sx0, sy1 - sy0, (sx0 - x0) * k, (sy0 - y0) * k, (sx1 - sx0) * k,
      (sy1 - sy0) * k);
    const result = this.crop.detect(this.scratch);
    if (!result.faceLandmarks.length) return null;
    const points = result.faceLandmarks[0].map((p) => ({ x: (p.x * s + x0) / w, y: (p.y * s + y0) / h, z: (p.z * s) / w }));
    return { result, points };
  }

  // A small face found on a crop; the next frame's crop is centred on where its landmarks are now.
  follow(found, width, height, faces, score) {
    const xs = found.points.map((p) => p.x);
    const ys = found.points.map((p) => p.y);
    const [minX, minY] = [Math.min(...xs), Math.min(...ys)];
    const [bw, bh] = [Math.max(...xs) - minX, Math.max(...ys) - minY];
    const side = Math.max(bw * width, bh * height); // pixels, like a detector box around the face
    this.roi = [minX + bw / 2 - side / width / 2, minY + bh / 2 - side / height / 2, side / width, side / height,
      score];
    return faceOf(found.result, faces, score, found.points);
  }

  // The student's face on this frame (FaceLandmarker.detect in stream mode); `ms` is the frame's time.
  find(canvas, ms) {
    const { width, height } = canvas;
    // VIDEO mode wants strictly increasing milliseconds.
    this.lastMs = Math.max(this.lastMs + 1, Math.round(ms));
    const result = this.main.detectForVideo(canvas, this.lastMs);
    if (result.faceLandmarks.length) {
      this.roi = null;
      if (!within(this.lastCountMs, ms, COUNT_INTERVAL_MS)) {
        this.lastCountMs = ms;
        this.count = this.detections(canvas, 0, 0, width, height).length;
      }
      return faceOf(result, this.count, NaN);
    }
    if (this.roi) {
      const found = this.onCrop(canvas, this.roi);
      if (found) return this.follow(found, width, height, Math.max(1, this.count), this.roi[4]);
      this.roi = null;
    }
    if (within(this.lastSearchMs, ms, SEARCH_INTERVAL_MS)) return faceOf(null, 0, NaN);
    this.lastSearchMs = ms;
    const boxes = this.search(canvas);
    this.count = boxes.length;
    for (const box of boxes) {
      const found = this.onCrop(canvas, box);
      if (found) return this.follow(found, width, height, boxes.length, box[4]);
    }
    return faceOf(null, 0, NaN);
  }
}

// The packed faces landmarked since the last batch message, oldest first; past `max` the oldest go (newest win).
class FaceBatch {
  constructor() {
    this.faces = []; // { buffer, t } with t the capture time (ms)
    this.dropped = 0;
  }

  add(buffer, t, max) {
    this.faces.push({ buffer, t });
    while (this.faces.length > max) (this.faces.shift(), (this.dropped += 1));
  }

  // Whether the oldest face has waited `ms` (the batch is due).
  due(now, ms) {
    return this.faces.length > 0 && now - this.faces[0].t >= ms;
  }

  take() {
    const faces = this.faces;
    this.faces = [];
    return faces;
  }
}

// Serve's face pipe (serve/pipe.py): while the kernel offers one (the `pipe` trait: {path, token}), batches go
// there as one binary message each, past Jupyter's messaging, and the kernel's acks come back on it. Whenever it is
// not open (not offered, refused, closed), batches go over the comm as before.
class FacePipe {
  constructor(onAck) {
    this.onAck = onAck;
    this.ws = null;
    this.token = "";
    this.ready = false;
  }

  // Open the pipe the kernel offers, once per token; close it when the kernel offers none.
  follow(offer) {
    const token = (offer && offer.token) || "";
    if (token === this.token) return;
    this.close();
    this.token = token;
    if (!token || !offer.path) return;
    const url = new URL(offer.path, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url.href);
    ws.binaryType = "arraybuffer";
    ws.onopen = () => ws.send(JSON.stringify({ type: "hello", token }));
    ws.onmessage = (event) => {
      let msg = null;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      if (msg && msg.type === "welcome") this.ready = true;
      else if (msg && msg.type === "ack") this.onAck(msg);
    };
    ws.onclose = () => {
      if (this.ws === ws) (this.ws = null), (this.ready = false);
    };
    this.ws = ws;
  }

  // The batch as one message (vision/packed.py's batch layout): u32 number, u32 header length, the header (JSON),
  // the packed faces. False when the pipe is not open: the caller sends over the comm.
  send(seq, header, faces) {
    if (!this.ready || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    const head = new TextEncoder().encode(JSON.stringify(header));
    let size = 8 + head.length;
    for (const f of faces) size += f.buffer.byteLength;
    const out = new Uint8Array(size);
    const view = new DataView(out.buffer);
    view.setUint32(0, seq, true);
    view.setUint32(4, head.length, true);
    out.set(head, 8);
    let at = 8 + head.length;
    for (const f of faces) {
      out.set(new Uint8Array(f.buffer), at);
      at += f.buffer.byteLength;
    }
    this.ws.send(out.buffer);
    return true;
  }

  close() {
    if (this.ws) {
      this.ws.onclose = null;
      this.ws.close();
    }
    this.ws = null;
    this.ready = false;
  }
}

function statusFor(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "PermissionDeniedError":
    case "SecurityError":
      return "denied";
    case "NotFoundError":
    case "DevicesNotFoundError":
    case "OverconstrainedError":
      return "no-camera";
    case "NotReadableError":
    case "TrackStartError":
    case "AbortError":
      return "in-use";
    default:
      return "error";
  }
}

function percentile(sorted, q) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

const round1 = (x) => Math.round(x * 10) / 10;

// The widget's elements: the preview, the status note with its retry button, and the canvas frames are drawn on.
function makeView(el) {
  el.classList.add("smartsession-camera");
  const video = document.createElement("video");
  video.muted = true;
  video.playsInline = true;
  video.autoplay = true;
  video.className = "smartsession-camera-preview";
  const note = document.createElement("div");
  note.className = "smartsession-camera-note";
  note.setAttribute("role", "status");
  const retry = document.createElement("button");
  retry.textContent = "Try again";
  retry.className = "smartsession-camera-retry";
  el.append(video, note, retry);
  const canvas = document.createElement("canvas");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  return { video, note, retry, canvas, ctx };
}

// Where each round trip went (ms): capture -> send (draw + JPEG encode), the kernel's own durations from the ack
// (slot wait, decode, callbacks), and the rest: both trips through the server.
const PARTS = ["encode", "wait", "decode", "callbacks", "transit"];

// The messages awaiting the kernel's ack, and what the acks tell: counts, round trips and their parts, per frame
// (a picture or a face is one frame, a batch several).
class FrameStats {
  constructor() {
    // seq -> { times: capture times of its frames, sent: when handed to the comm } (ms)
    this.inFlight = new Map();
    this.counts = {
      sent: 0, faces_sent: 0, batches_sent: 0, skipped: 0, processed: 0, dropped_by_kernel: 0, max_in_flight_seen: 0,
      bytes_sent: 0,
    };
    this.rtts = []; // round trips (ms) of processed frames, newest last
    this.parts = []; // the same frames' round trips in PARTS
    this.processedTimes = []; // capture times of the processed frames (ms), for the rate
  }

  // Whether `max` messages already await an ack (after forgetting those whose ack was lost: STALE_MS).
  full(t, max) {
    for (const [s, frame] of this.inFlight) if (t - frame.times[0] > STALE_MS) this.inFlight.delete(s);
    return this.inFlight.size >= max;
  }

  awaiting(seq, frame) {
    this.inFlight.set(seq, frame);
    this.counts.max_in_flight_seen = Math.max(this.counts.max_in_flight_seen, this.inFlight.size);
  }

  sent(kind, bytes) {
    this.counts[kind] += 1;
    this.counts.bytes_sent += bytes;
  }

  sentBatch(faces) {
    this.counts.batches_sent += 1;
    this.counts.faces_sent += faces.length;
    for (const f of faces) this.counts.bytes_sent += f.buffer.byteLength;
  }

  ack(msg, t) {
    const frame = this.inFlight.get(msg.seq);
    this.inFlight.delete(msg.seq);
    if (frame === undefined) return;
    if (!msg.processed) {
      this.counts.dropped_by_kernel += frame.times.length;
      return;
    }
    this.counts.processed += frame.times.length;
    const k = msg.kernel_ms || {};
    const kernel = (k.wait || 0) + (k.decode || 0) + (k.callbacks || 0);
    // Each frame's own round trip: from its capture to the ack (its state is on the page by then); "encode"
    // includes the wait in its batch.
    for (const captured of frame.times) {
      const rtt = t - captured;
      this.rtts.push(rtt);
      this.processedTimes.push(captured); // capture times: a batch's acks all arrive at once
      const encode = frame.sent === null ? 0 : frame.sent - captured;
      this.parts.push({ encode, wait: k.wait, decode: k.decode, callbacks: k.callbacks, transit: rtt - encode - kernel });
    }
    if (this.rtts.length > 200) {
      this.rtts = this.rtts.slice(-100);
      this.parts = this.parts.slice(-100);
    }
  }

  report(t, extra) {
    this.processedTimes = this.processedTimes.filter((x) => t - x <= 6000);
    const sorted = [...this.rtts].sort((a, b) => a - b);
    const breakdown = {};
    for (const name of PARTS) {
      const values = this.parts.map((p) => p[name]).filter((x) => typeof x === "number").sort((a, b) => a - b);
      if (values.length) breakdown[name] = [round1(percentile(values, 0.5)), round1(percentile(values, 0.9))];
    }
    const times = this.processedTimes;
    const span = times.length > 1 ? (times[times.length - 1] - times[0]) / 1000 : 0;
    return {
      ...this.counts,
      ...extra,
      in_flight: this.inFlight.size,
      fps: span > 0 ? Number(((times.length - 1) / span).toFixed(2)) : 0,
      rtt_ms_median: percentile(sorted, 0.5),
      rtt_ms_p90: percentile(sorted, 0.9),
      breakdown_ms: breakdown, // part -> [median, p90] over the same frames as the round trip
    };
  }
}

// Every listener and timer of a rendered widget, registered in one place; the function returned removes them all.
function listen(model, { modelEvents, documentEvents, every }) {
  for (const [name, fn] of Object.entries(modelEvents)) model.on(name, fn);
  for (const [name, fn] of Object.entries(documentEvents)) document.addEventListener(name, fn);
  const timers = every.map(([ms, fn]) => setInterval(fn, ms));
  return () => {
    timers.forEach(clearInterval);
    for (const [name, fn] of Object.entries(documentEvents)) document.removeEventListener(name, fn);
    for (const [name, fn] of Object.entries(modelEvents)) model.off(name, fn);
  };
}

function render({ model, el }) {
  const { video, note, retry, canvas, ctx } = makeView(el);
  const stats = new FrameStats();
  const batch = new FaceBatch();
  const now = () => performance.timeOrigin + performance.now();
  const pipe = new FacePipe((msg) => stats.ack(msg, now()));
  const followPipe = () => pipe.follow(model.get("pipe"));

  // --- the analysis mode: the browser's FaceFinder once loaded, else frames to the kernel ---

  let finder = null; // null while loading or after falling back to frames
  let loading = null;
  let detectMs = []; // the finder's own time per frame, newest last

  function setMode(mode, detail = "") {
    if (model.get("mode") === mode && model.get("mode_detail") === detail) return;
    model.set("mode", mode);
    model.set("mode_detail", detail);
    model.save_changes();
  }

  function fallBack(reason) {
    if (finder) finder.close();
    finder = null;
    batch.take(); // gathered before the fall back: the kernel stops taking faces now
    setMode("server", reason);
  }

  function prepareAnalysis() {
    if (model.get("analysis") !== "browser") return setMode("server");
    if (finder || loading || model.get("mode") === "server") return;
    const started = performance.now();
    loading = FaceFinder.create(model.get("assets"))
      .then((made) => {
        finder = made;
        stats.counts.model_load_ms = Math.round(performance.now() - started);
        setMode("browser");
      })
      .catch((error) => fallBack(`the face model could not load here (${error.message || error})`))
      .finally(() => {
        loading = null;
        showMessage();
      });
  }

  // --- the camera: its stream, its status and the message shown ---

  let stream = null;
  let timer = null;
  let seq = 0;
  let starting = false;

  function setStatus(status, detail = "") {
    if (model.get("status") === status && model.get("detail") === detail) return;
    model.set("status", status);
    model.set("detail", detail);
    model.save_changes();
  }

  function showMessage() {
    note.textContent = model.get("message");
    note.dataset.status = model.get("status");
    retry.style.display = ["denied", "no-camera", "in-use", "ended", "error"].includes(model.get("status"))
      ? "inline-block"
      : "none";
    video.style.transform = model.get("mirror") ? "scaleX(-1)" : "none";
    video.style.display = stream ? "block" : "none";
  }

  function stopStream() {
    if (timer !== null) clearInterval(timer);
    timer = null;
    if (stream) stream.getTracks().forEach((track) => track.stop());
    stream = null;
    video.srcObject = null;
    stats.inFlight.clear();
    batch.take();
  }

  async function start() {
    if (starting || stream) return;
    if (!window.isSecureContext) return setStatus("insecure");
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return setStatus("unsupported");
    starting = true;
    setStatus("starting");
    try {
      const media = await navigator.mediaDevices.getUserMedia({
        video: {
          width: { ideal: model.get("width") },
          height: { ideal: model.get("height") },
          frameRate: { ideal: Math.max(model.get("fps"), 10) },
        },
        audio: false,
      });
      if (!model.get("active")) {
        media.getTracks().forEach((track) => track.stop());
        return;
      }
      stream = media;
      const [track] = stream.getVideoTracks();
      // An unplugged camera (or one taken away by the OS) ends the track without an error; the track goes
      // with the stream, and its listener with it.
      track.addEventListener("ended", () => {
        stopStream();
        setStatus("ended");
        showMessage();
      });
      video.srcObject = stream;
      await video.play().catch(() => {});
      if (stream !== media) return; // turned off (or ended) while the video started: stay off
      timer = setInterval(tick, 1000 / model.get("fps"));
      setStatus(document.hidden ? "hidden" : "live");
    } catch (error) {
      setStatus(statusFor(error), `${error.name}: ${error.message}`);
    } finally {
      starting = false;
      showMessage();
    }
  }

  // --- each tick: a frame drawn, then sent as a JPEG or analysed here ---

  function tick() {
    if (!stream || document.hidden || video.readyState < 2) return;
    const mode = model.get("mode");
    if (mode !== "browser" && mode !== "server") return; // the landmarker is still loading: nothing is sent
    const t = now();
    const batching = mode === "browser" && finder && model.get("batch_seconds") > 0;
    if (!batching && stats.full(t, model.get("max_in_flight"))) {
      stats.counts.skipped += 1; // the kernel is busy: this frame is dropped here, before it costs anything
      return;
    }
    const analysedHere = mode === "browser" && finder;
    if (!analysedHere && !pictureDue(t)) return; // paced, not dropped: pictures go at picture_fps
    const width = model.get("width");
    const height = model.get("height");
    if (canvas.width !== width) canvas.width = width;
    if (canvas.height !== height) canvas.height = height;
    ctx.drawImage(video, 0, 0, width, height);
    if (analysedHere) return analyseHere(t, width, height);
    const frameSeq = ++seq;
    const frame = { times: [t], sent: null };
    stats.awaiting(frameSeq, frame);
    canvas.toBlob(
      async (blob) => {
        if (!blob || !stream) return stats.inFlight.delete(frameSeq);
        const buffer = await blob.arrayBuffer();
        frame.sent = now();
        model.send({ type: "frame", seq: frameSeq, t: t / 1000, width, height }, {}, [buffer]);
        stats.sent("sent", buffer.byteLength);
      },
      "image/jpeg",
      model.get("quality"),
    );
  }

  // Pictures go at most picture_fps a second (0: every tick), each a whole face analysis for the kernel; the
  // ticks come at fps, so the next picture is due an interval after the last was due, never in a burst.
  let nextPicture = 0;
  function pictureDue(t) {
    const rate = model.get("picture_fps");
    if (!(rate > 0)) return true;
    if (t < nextPicture) return false;
    const interval = 1000 / rate;
    nextPicture = Math.max(nextPicture + interval, t + interval / 2);
    return true;
  }

  // Browser analysis: the same canvas the JPEG would be made from goes through the landmarker; only numbers leave.
  function analyseHere(t, width, height) {
    const started = performance.now();
    let face;
    try {
      face = finder.find(canvas, started);
    } catch (error) {
      return fallBack(`the face model failed here (${error.message || error})`);
    }
    const took = performance.now() - started;
    detectMs.push(took);
    if (detectMs.length > 100) detectMs = detectMs.slice(-SPEED_WINDOW);
    const recent = detectMs.slice(-SPEED_WINDOW).sort((a, b) => a - b);
    const slowest = 1000 / model.get("min_browser_fps");
    if (recent.length === SPEED_WINDOW && percentile(recent, 0.5) > slowest) {
      return fallBack(`this computer analyses ${round1(1000 / percentile(recent, 0.5))} frames a second, ` +
        `fewer than ${model.get("min_browser_fps")}`);
    }
    const buffer = packFace(face, t / 1000, width, height, model.get("landmark_indices"));
    if (model.get("batch_seconds") > 0) {
      batch.add(buffer, t, model.get("max_batch"));
      return sendBatch();
    }
    const frameSeq = ++seq;
    stats.awaiting(frameSeq, { times: [t], sent: now() });
    model.send({ type: "face", seq: frameSeq, t: t / 1000 }, {}, [buffer]);
    stats.sent("faces_sent", buffer.byteLength);
  }

  // The gathered faces as one message once the oldest has waited batch_seconds and the kernel has a free slot;
  // until then the batch keeps gathering, its oldest faces going past max_batch (counted as skipped). The
  // message's `t` is its newest face's capture time.
  function sendBatch() {
    const t = now();
    if (!batch.due(t, 1000 * model.get("batch_seconds")) || stats.full(t, model.get("max_in_flight"))) return;
    stats.counts.skipped += batch.dropped;
    batch.dropped = 0;
    const faces = batch.take();
    const frameSeq = ++seq;
    stats.awaiting(frameSeq, { times: faces.map((f) => f.t), sent: t });
    const content = { type: "faces", seq: frameSeq, t: faces[faces.length - 1].t / 1000 };
    if (batchStats !== null) {
      content.stats = batchStats;
      batchStats = null;
    }
    // Through the pipe when it is open (its ack comes back on it), else over the comm.
    const header = { t: content.t, sizes: faces.map((f) => f.buffer.byteLength) };
    if (content.stats) header.stats = content.stats;
    if (pipe.send(frameSeq, header, faces)) return stats.sentBatch(faces);
    // The kernel's "idle" for this message: the batch is analysed and its feedback drawn. A refused batch's ack
    // (processed: false) comes before it, and the idle then finds nothing awaiting.
    const acked = (msg) => {
      if (msg.content && msg.content.execution_state === "idle") stats.ack({ seq: frameSeq, processed: true }, now());
    };
    model.send(content, { iopub: { status: acked } }, faces.map((f) => f.buffer));
    stats.sentBatch(faces);
  }

  // --- what the kernel and the page tell the widget ---

  function onMessage(msg) {
    if (msg && msg.type === "ack") stats.ack(msg, now());
  }

  let statsSent = 0; // when the stats last went to the kernel (ms)
  let batchStats = null; // the counters the next batch carries

  function reportStats() {
    const t = now();
    const sortedDetect = [...detectMs].sort((a, b) => a - b);
    const report = stats.report(t, {
      mode: model.get("mode"),
      detect_ms_median: sortedDetect.length ? round1(percentile(sortedDetect, 0.5)) : null,
      detect_ms_p90: sortedDetect.length ? round1(percentile(sortedDetect, 0.9)) : null,
    });
    // Also on the element, so benchmarks and browser tests can read them without the kernel.
    el.dataset.stats = JSON.stringify(report);
    const batching = model.get("mode") === "browser" && finder && model.get("batch_seconds") > 0;
    if (t - statsSent < (batching ? BATCH_STATS_MS : STATS_MS)) return;
    statsSent = t;
    if (batching) {
      batchStats = report;
      return;
    }
    model.set("stats", report);
    model.save_changes();
  }

  function onVisibility() {
    if (!stream) return;
    setStatus(document.hidden ? "hidden" : "live");
  }

  function onActive() {
    if (model.get("active")) start();
    else {
      stopStream();
      setStatus("off");
      showMessage();
    }
  }

  function onFps() {
    if (timer === null) return;
    clearInterval(timer);
    timer = setInterval(tick, 1000 / model.get("fps"));
  }

  // The button's listener goes with the button (the widget's own element); the rest is the model's, the
  // document's and timers, which outlive the view unless removed.
  retry.addEventListener("click", () => {
    stopStream();
    start();
  });
  const unlisten = listen(model, {
    modelEvents: {
      "msg:custom": onMessage,
      "change:active": onActive,
      "change:message": showMessage,
      "change:mirror": showMessage,
      "change:fps": onFps,
      "change:analysis": prepareAnalysis,
      "change:pipe": followPipe,
    },
    documentEvents: { visibilitychange: onVisibility },
    every: [[STATS_MS, reportStats]],
  });
  showMessage();
  followPipe();
  // Loaded before the student agrees, so the analysis is ready when the camera starts; loading sends nothing.
  prepareAnalysis();
  if (model.get("active")) start();
  else setStatus("off");

  return () => {
    unlisten();
    stopStream();
    pipe.close();
    if (finder) finder.close();
  };
}

// Named exports for the parity test (tests/browser/test_parity.py), which runs the same code on a bare page.
export { FaceFinder, packFace };
export default { render };
