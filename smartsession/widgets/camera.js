// The browser half of the Camera widget: getUserMedia -> canvas -> JPEG blob -> binary comm buffer.
// Back-pressure: at most `max_in_flight` frames await the kernel's ack; ticks beyond that are skipped.

const STALE_MS = 5000; // an ack lost with a restarted kernel must not freeze the window forever

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

function render({ model, el }) {
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
  const ctx = canvas.getContext("2d");

  let stream = null;
  let timer = null;
  let seq = 0;
  let starting = false;
  const inFlight = new Map(); // seq -> { t: capture time, sent: when handed to the comm } (ms)
  const counts = { sent: 0, skipped: 0, processed: 0, dropped_by_kernel: 0, max_in_flight_seen: 0, bytes_sent: 0 };
  let rtts = []; // round trips (ms) of processed frames, newest last
  // Where each round trip went (ms), same frames as rtts: capture -> send (draw + JPEG encode), the kernel's
  // own durations from the ack (slot wait, decode, callbacks), and the rest: both trips through the server.
  const PARTS = ["encode", "wait", "decode", "callbacks", "transit"];
  let parts = [];
  let processedTimes = []; // when acks of processed frames arrived (ms)

  const now = () => performance.timeOrigin + performance.now();

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
    inFlight.clear();
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
      // An unplugged camera (or one taken away by the OS) ends the track without an error.
      track.addEventListener("ended", () => {
        stopStream();
        setStatus("ended");
        showMessage();
      });
      video.srcObject = stream;
      await video.play().catch(() => {});
      timer = setInterval(tick, 1000 / model.get("fps"));
      setStatus(document.hidden ? "hidden" : "live");
    } catch (error) {
      setStatus(statusFor(error), `${error.name}: ${error.message}`);
    } finally {
      starting = false;
      showMessage();
    }
  }

  function tick() {
    if (!stream || document.hidden || video.readyState < 2) return;
    const t = now();
    for (const [s, frame] of inFlight) if (t - frame.t > STALE_MS) inFlight.delete(s);
    if (inFlight.size >= model.get("max_in_flight")) {
      counts.skipped += 1; // the kernel is busy: this frame is dropped here, before it costs anything
      return;
    }
    const width = model.get("width");
    const height = model.get("height");
    if (canvas.width !== width) canvas.width = width;
    if (canvas.height !== height) canvas.height = height;
    ctx.drawImage(video, 0, 0, width, height);
    const frameSeq = ++seq;
    const frame = { t, sent: null };
    inFlight.set(frameSeq, frame);
    counts.max_in_flight_seen = Math.max(counts.max_in_flight_seen, inFlight.size);
    canvas.toBlob(
      async (blob) => {
        if (!blob || !stream) return inFlight.delete(frameSeq);
        const buffer = await blob.arrayBuffer();
        frame.sent = now();
        model.send({ type: "frame", seq: frameSeq, t: t / 1000, width, height }, {}, [buffer]);
        counts.sent += 1;
        counts.bytes_sent += buffer.byteLength;
      },
      "image/jpeg",
      model.get("quality"),
    );
  }

  function onMessage(msg) {
    if (!msg || msg.type !== "ack") return;
    const frame = inFlight.get(msg.seq);
    inFlight.delete(msg.seq);
    if (frame === undefined) return;
    if (msg.processed) {
      counts.processed += 1;
      const t = now();
      const rtt = t - frame.t;
      rtts.push(rtt);
      processedTimes.push(t);
      const k = msg.kernel_ms || {};
      const kernel = (k.wait || 0) + (k.decode || 0) + (k.callbacks || 0);
      const encode = frame.sent === null ? 0 : frame.sent - frame.t;
      parts.push({ encode, wait: k.wait, decode: k.decode, callbacks: k.callbacks, transit: rtt - encode - kernel });
      if (rtts.length > 200) {
        rtts = rtts.slice(-100);
        parts = parts.slice(-100);
      }
    } else {
      counts.dropped_by_kernel += 1;
    }
  }

  function reportStats() {
    const t = now();
    processedTimes = processedTimes.filter((x) => t - x <= 5000);
    const sorted = [...rtts].sort((a, b) => a - b);
    const breakdown = {};
    for (const name of PARTS) {
      const values = parts.map((p) => p[name]).filter((x) => typeof x === "number").sort((a, b) => a - b);
      if (values.length) breakdown[name] = [round1(percentile(values, 0.5)), round1(percentile(values, 0.9))];
    }
    const span = processedTimes.length > 1 ? (t - processedTimes[0]) / 1000 : 0;
    const stats = {
      ...counts,
      in_flight: inFlight.size,
      fps: span > 0 ? Number(((processedTimes.length - 1) / span).toFixed(2)) : 0,
      rtt_ms_median: percentile(sorted, 0.5),
      rtt_ms_p90: percentile(sorted, 0.9),
      breakdown_ms: breakdown, // part -> [median, p90] over the same frames as the round trip
    };
    // Also on the element, so benchmarks and browser tests can read them without the kernel.
    el.dataset.stats = JSON.stringify(stats);
    model.set("stats", stats);
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

  retry.addEventListener("click", () => {
    stopStream();
    start();
  });
  model.on("msg:custom", onMessage);
  model.on("change:active", onActive);
  model.on("change:message", showMessage);
  model.on("change:mirror", showMessage);
  model.on("change:fps", onFps);
  document.addEventListener("visibilitychange", onVisibility);
  const statsTimer = setInterval(reportStats, 1000);
  showMessage();
  if (model.get("active")) start();
  else setStatus("off");

  return () => {
    clearInterval(statsTimer);
    document.removeEventListener("visibilitychange", onVisibility);
    model.off("msg:custom", onMessage);
    model.off("change:active", onActive);
    model.off("change:message", showMessage);
    model.off("change:mirror", showMessage);
    model.off("change:fps", onFps);
    stopStream();
  };
}

export default { render };
