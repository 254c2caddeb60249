// The teacher page's note on the student kernel pool: how many preheated kernels are ready, while it fills.
// Reads /smartsession/health (counts only, no class data); removed once the pool is warm.
(function () {
  const script = document.currentScript;
  const health = script.dataset.health;
  const box = document.createElement("div");
  box.id = "ss-pool-status";
  box.setAttribute("role", "status");
  box.style.cssText =
    // pointer-events:none: a note, never in the way of the buttons under it.
    "position:fixed;right:1em;bottom:1em;z-index:1000;padding:.5em .8em;border-radius:4px;pointer-events:none;" +
    "background:#263238;color:#fff;font:14px system-ui,sans-serif;box-shadow:0 1px 4px rgba(0,0,0,.3)";
  box.textContent = "Student pages: checking the kernel pool…";

  function show(pool) {
    if (!document.body.contains(box)) document.body.appendChild(box);
    box.textContent = `Student pages: ${pool.warm_count} of ${pool.size} preheated kernels ready` +
      (pool.warm ? "." : ", still warming up. Students who join now wait a few seconds more.");
  }

  async function poll() {
    let pool = null;
    try {
      const response = await fetch(health, { cache: "no-store" });
      if (response.ok) pool = (await response.json()).pool;
    } catch (err) {
      // The server restarting: try again on the next tick.
    }
    if (pool && pool.size === 0) return;  // no pool configured: nothing to wait for
    if (pool) show(pool);
    if (pool && pool.warm) {
      setTimeout(() => box.remove(), 5000);
      return;
    }
    setTimeout(poll, 2000);
  }
  poll();
})();
