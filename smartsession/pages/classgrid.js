// Student cards for the teacher page. Each card carries data-student, data-state and data-presence
// so tests and styles never depend on the wording; only cards whose JSON changed are redrawn.

const SVG = "http://www.w3.org/2000/svg";

function build(model, id) {
  const node = document.createElement("div");
  node.className = "ss-card";
  node.dataset.student = id;
  node.tabIndex = 0;
  node.setAttribute("role", "button");
  node.setAttribute("aria-pressed", "false");
  const select = () => {
    model.set("selected", model.get("selected") === id ? "" : id);
    model.save_changes();
  };
  node.addEventListener("click", select);
  node.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      select();
    }
  });
  const head = document.createElement("div");
  head.className = "ss-card-head";
  const dot = document.createElement("span");
  dot.className = "ss-dot";
  // The symbol repeats the state's shape for sighted users; the card's aria-label says it in words.
  dot.setAttribute("aria-hidden", "true");
  const label = document.createElement("span");
  label.className = "ss-label";
  head.append(dot, label);
  // The card's name for a screen reader is its text: "Ada engagement 76 focused seen 10:42:07".
  const unit = document.createElement("span");
  unit.className = "ss-sr";
  unit.textContent = "engagement ";
  const score = document.createElement("div");
  score.className = "ss-score";
  const state = document.createElement("div");
  state.className = "ss-state";
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("class", "ss-spark");
  svg.setAttribute("viewBox", "0 0 96 24");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true");
  const line = document.createElementNS(SVG, "polyline");
  svg.appendChild(line);
  const seen = document.createElement("div");
  seen.className = "ss-seen";
  node.append(head, unit, score, state, svg, seen);
  return node;
}

function fill(node, c) {
  node.dataset.state = c.state;
  node.dataset.presence = c.presence;
  node.dataset.hidden = c.hidden ? "true" : "false";
  node.dataset.t = c.t === null ? "" : String(c.t);
  node.dataset.engagement = c.engagement === null ? "" : String(c.engagement);
  node.style.setProperty("--ss-colour", c.colour);
  // textContent, never innerHTML: names are typed by students.
  node.querySelector(".ss-label").textContent = c.label;
  node.title = c.label;
  const shown = c.presence === "connected" ? c.state : c.presence;
  node.querySelector(".ss-dot").textContent = c.symbol;
  node.querySelector(".ss-score").textContent = c.engagement === null ? "–" : String(c.engagement);
  node.querySelector(".ss-state").textContent = shown;
  node.querySelector("polyline").setAttribute("points", c.spark);
  const seen = node.querySelector(".ss-seen");
  seen.textContent =
    c.last_seen === null ? "not seen yet" : "seen " + new Date(c.last_seen * 1000).toLocaleTimeString();
}

function render({ model, el }) {
  const grid = document.createElement("div");
  grid.className = "ss-grid";
  const empty = document.createElement("div");
  empty.className = "ss-empty";
  empty.textContent = "No students yet: share the join link.";
  el.append(empty, grid);
  const nodes = new Map();
  const drawn = new Map();

  function draw() {
    const cards = model.get("cards");
    const selected = model.get("selected");
    const keep = new Set();
    cards.forEach((c, i) => {
      keep.add(c.id);
      let node = nodes.get(c.id);
      if (!node) {
        node = build(model, c.id);
        nodes.set(c.id, node);
      }
      if (grid.children[i] !== node) grid.insertBefore(node, grid.children[i] || null);
      const json = JSON.stringify(c);
      if (drawn.get(c.id) !== json) {
        fill(node, c);
        drawn.set(c.id, json);
      }
      node.classList.toggle("ss-selected", c.id === selected);
      node.setAttribute("aria-pressed", c.id === selected ? "true" : "false");
    });
    for (const [id, node] of nodes) {
      if (!keep.has(id)) {
        node.remove();
        nodes.delete(id);
        drawn.delete(id);
      }
    }
    empty.hidden = cards.length > 0;
    grid.dataset.count = String(cards.length);
  }

  model.on("change:cards", draw);
  model.on("change:selected", draw);
  draw();
  return () => {
    model.off("change:cards", draw);
    model.off("change:selected", draw);
  };
}

export default { render };
