// A live run's page: poll the run's JSON, show its progress and the stages in flight, and
// reload when something new happened (plots and tables are drawn on the server). Loaded
// only while it runs.
"use strict";
(function () {
  const live = document.getElementById("live");
  if (!live) return;
  const flight = document.getElementById("in-flight");
  const every = 2000;

  // the same words as the server's page, built as nodes: nothing from the memory is markup
  function showInFlight(run) {
    if (!flight) return;
    const parts = [document.createTextNode("In flight: ")];
    run.in_flight.forEach((s, i) => {
      if (i) parts.push(document.createTextNode(", "));
      if (s.candidate_id) {
        const link = document.createElement("a");
        link.href = `/candidates/${encodeURIComponent(s.candidate_id)}`;
        const code = document.createElement("code");
        code.textContent = s.candidate_id.slice(0, 12);
        link.append(code);
        parts.push(link);
      } else {
        parts.push(document.createTextNode("the best candidates"));
      }
      const lane = run.lanes > 1 ? `lane ${s.lane}, ` : "";
      parts.push(document.createTextNode(` ${s.stage} (${lane}${Math.round(s.seconds)} s)`));
    });
    if (!run.in_flight.length) {
      parts.push(document.createTextNode(
        "nothing now (the run is planning, judging or recording a candidate)"));
    }
    flight.replaceChildren(...parts);
  }

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
      showInFlight(run);
    } catch (e) {
      live.textContent = `Live: lost the UI server (${e.message}); trying again.`;
    }
    setTimeout(poll, every);
  }
  setTimeout(poll, every);
})();
