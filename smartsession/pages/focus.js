// Brings what the teacher just opened (a student's detail, a report) into view and moves focus to it, so a
// keyboard or screen reader user lands on it instead of searching below the fold.

function render({ model, el }) {
  el.style.display = "none";
  const go = () => {
    const target = document.querySelector(model.get("selector"));
    if (!target) return;
    if (!target.hasAttribute("tabindex")) target.setAttribute("tabindex", "-1");
    target.scrollIntoView({ block: "start", behavior: "smooth" });
    target.focus({ preventScroll: true });
  };
  const later = () => requestAnimationFrame(() => requestAnimationFrame(go));  // after the widget redrew
  model.on("change:nonce", later);
  return () => model.off("change:nonce", later);
}

export default { render };
