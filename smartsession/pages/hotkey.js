// One key for the teacher: N or PageDown (a presentation clicker's "next") advances the lesson plan, unless
// the teacher is typing in a field. Counts presses; the kernel reacts to the count changing.

function typing(target) {
  const tag = (target && target.tagName) || "";
  return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable);
}

function render({ model, el }) {
  const keys = new Set(model.get("shortcuts"));
  const onKey = (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey || typing(event.target)) return;
    if (!keys.has(event.key)) return;
    event.preventDefault();
    model.set("presses", model.get("presses") + 1);
    model.save_changes();
  };
  document.addEventListener("keydown", onKey);
  el.style.display = "none";
  return () => document.removeEventListener("keydown", onKey);
}

export default { render };
