// A live run's page: poll the run's JSON, show its progress, and reload when something
// new happened (plots and tables are drawn on the server). Loaded only while it runs.
"use strict";
(function () {
  const live = document.getElementById("live");
  if (!live) return;
  const every = 2000;
  async function poll() {
    try {
      const answer = await fetch(live.dataset.api, { cache: "no-store" });
      if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
      const run = await answer.json();
      if (run.version !== live.dataset.version) {
        location.reload();
        return;
      }
      const minutes = run.budgets.find((b) => b.name === "wall time").spent / 60;
      live.textContent = `Live: ${run.n_candidates} candidates and ${run.n_trials} trials ` +
        `so far, ${minutes.toFixed(1)} min; this page follows the run.`;
    } catch (e) {
      live.textContent = `Live: lost the UI server (${e.message}); trying again.`;
    }
    setTimeout(poll, every);
  }
  setTimeout(poll, every);
})();
