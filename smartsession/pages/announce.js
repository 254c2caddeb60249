// A polite live region that lives as long as the widget: screen readers announce changes to an element that
// was already in the page, not one that is replaced, so only its text changes.

function render({ model, el }) {
  const region = document.createElement("div");
  region.className = "ss-announce";
  region.setAttribute("role", "status");
  region.setAttribute("aria-live", "polite");
  region.setAttribute("aria-atomic", "true");
  // Visually hidden, still read: the same words are on screen elsewhere.
  Object.assign(region.style, {
    position: "absolute", width: "1px", height: "1px", margin: "-1px", padding: "0",
    overflow: "hidden", clip: "rect(0 0 0 0)", whiteSpace: "nowrap", border: "0",
  });
  el.append(region);
  const show = () => {
    region.textContent = model.get("text");
  };
  model.on("change:text", show);
  show();
  return () => model.off("change:text", show);
}

export default { render };
