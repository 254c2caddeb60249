// The browser half of LandmarkOverlay: dots on a transparent canvas, from a float32 (x, y) buffer.

function toFloats(value) {
  if (!value) return new Float32Array(0);
  const view = value instanceof DataView ? value : new DataView(value.buffer || value);
  return new Float32Array(view.buffer, view.byteOffset, Math.floor(view.byteLength / 4));
}

function render({ model, el }) {
  const canvas = document.createElement("canvas");
  canvas.className = "smartsession-overlay";
  canvas.style.pointerEvents = "none";
  el.append(canvas);
  const ctx = canvas.getContext("2d");

  function draw() {
    const width = model.get("width");
    const height = model.get("height");
    canvas.width = width;
    canvas.height = height;
    canvas.style.transform = model.get("mirror") ? "scaleX(-1)" : "none";
    ctx.clearRect(0, 0, width, height);
    const xy = toFloats(model.get("points"));
    ctx.fillStyle = model.get("color");
    for (let i = 0; i + 1 < xy.length; i += 2) {
      ctx.fillRect(xy[i] * width - 0.75, xy[i + 1] * height - 0.75, 1.5, 1.5);
    }
  }

  model.on("change", draw);
  draw();
  return () => model.off("change", draw);
}

export default { render };
