// The job page's Team section: each reviewer's progress and speed, the agreement between them
// (GET /jobs/N/team), and for the lead the forms that assign samples and name adjudicators.
"use strict";

(() => {
  const section = document.getElementById("team");
  if (!section) return;
  const jobId = section.dataset.jobId;
  const $ = (id) => document.getElementById(id);

  async function api(method, url, body) {
    const headers = { "X-Requested-With": "lilaw-team" };
    if (body) headers["Content-Type"] = "application/json";
    const response = await fetch(url, { method, headers, credentials: "same-origin", body: body && JSON.stringify(body) });
    const payload = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(payload.detail || response.statusText);
    return payload;
  }

  function cell(text, numeric) {
    const td = document.createElement("td");
    td.textContent = text;
    if (numeric) td.className = "num";
    return td;
  }

  const number = (value, digits = 0) => (value === null || value === undefined ? "–" : value.toFixed(digits));

  function fillRows(table, rows) {
    const body = table.querySelector("tbody");
    body.replaceChildren(...rows.map((cells) => {
      const tr = document.createElement("tr");
      tr.append(...cells.map(([text, numeric]) => cell(text, numeric)));
      return tr;
    }));
  }

  function render(report) {
    const conflicts = report.open_conflicts;
    $("team-summary").textContent = report.reviewers.length
      ? `${report.assigned_samples} samples assigned (${report.blind_samples} blind) · ${conflicts} open conflict${conflicts === 1 ? "" : "s"} · ${report.adjudicated} adjudicated`
      : "Nobody has reviewed this job yet.";
    fillRows($("team-reviewers"), report.reviewers.map((r) => [
      [r.reviewer], [r.assigned, true], [r.decided, true], [r.remaining, true],
      [number(r.decisions_per_hour), true], [number(r.median_seconds_between, 1), true],
    ]));
    fillRows($("team-pairs"), report.pairs.map((p) => [
      [`${p.first} · ${p.second}`], [p.shared, true], [p.agreeing, true], [number(p.cohen_kappa, 2), true],
    ]));
    $("team-fleiss").textContent = report.fleiss_samples
      ? `Fleiss' κ ${number(report.fleiss_kappa, 2)} over ${report.fleiss_samples} samples with two or more decisions.`
      : "";
    const link = $("team-adjudicate");
    link.hidden = !report.viewer.adjudicator;
    link.textContent = `Resolve conflicts (${conflicts}) →`;
    $("team-assign").hidden = !report.viewer.lead;
    $("team-adjudicators").hidden = !report.viewer.lead;
    $("adjudicator-list").textContent = report.adjudicators.length ? `adjudicators: ${report.adjudicators.join(", ")}` : "";
    section.dataset.loaded = "true";
  }

  async function load() {
    try {
      render(await api("GET", `/jobs/${jobId}/team`));
    } catch (error) {
      $("team-summary").textContent = `The team's progress cannot be read: ${error.message}`;
    }
  }

  function showMode() {
    const mode = $("assign-mode").value;
    for (const label of section.querySelectorAll("[data-mode]")) label.hidden = label.dataset.mode !== mode;
  }

  $("assign-mode").addEventListener("change", showMode);
  $("team-assign").addEventListener("submit", async (event) => {
    event.preventDefault();
    const mode = $("assign-mode").value;
    const body = {
      reviewers: $("assign-reviewers").value.split(",").map((name) => name.trim()).filter(Boolean),
      reviewers_per_sample: Number($("assign-k").value) || 1,
      blind: $("assign-blind").checked,
    };
    if (mode === "ranks") Object.assign(body, { rank_from: Number($("assign-from").value), rank_to: Number($("assign-to").value) });
    if (mode === "class") body.label = $("assign-label").value;
    if (mode === "count") body.count = Number($("assign-count").value);
    const result = $("assign-result");
    try {
      const made = await api("POST", `/jobs/${jobId}/assignments`, body);
      const each = Object.entries(made.per_reviewer).map(([name, n]) => `${name} ${n}`).join(", ");
      result.textContent = `${made.samples} samples assigned${each ? `: ${each}` : ""}.`;
      load();
    } catch (error) {
      result.textContent = error.message;
    }
  });
  $("team-adjudicators").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("PUT", `/jobs/${jobId}/adjudicators/${encodeURIComponent($("adjudicator-name").value.trim())}`);
      $("adjudicator-name").value = "";
      load();
    } catch (error) {
      $("adjudicator-list").textContent = error.message;
    }
  });

  showMode();
  load();
})();
