// The job page's stopping point: "about N likely label errors, M reviewed, K found", the
// "given → likely" pairs holding the most errors (each a link opening the review queue on that
// pair) and the estimate per given label, from GET /jobs/{id}/noise-estimate. It adds its own
// section under the job's heading and refreshes when the page is shown again (after reviewing).
"use strict";

(() => {
  const page = JSON.parse(document.getElementById("page-data").textContent);
  const jobId = page.job_id;
  const RETRY_MS = 10000;
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

  function h(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
    for (const child of children) node.append(child);
    return node;
  }

  const section = h("section", { class: "panel", id: "noise-estimate", "aria-live": "polite", hidden: "" });
  const heading = document.querySelector("main section.panel");
  if (heading) heading.after(section);
  else document.querySelector("main").append(section);

  async function getJson(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    const body = await response.json().catch(() => ({}));
    return { status: response.status, body };
  }

  const about = (value) => Math.round(value).toLocaleString();

  function table(head, rows) {
    return h("div", { class: "table-scroll" },
      h("table", { class: "table compact" },
        h("thead", {}, h("tr", {}, ...head.map((name) => h("th", {}, name)))),
        h("tbody", {}, ...rows)));
  }

  function render(estimate) {
    const source = estimate.source === "out_of_sample"
      ? "From the cross-fitted models' out-of-sample probabilities."
      : "From the audit's final probabilities (trained on these labels, they tend to undercount; an audit with cross-fitting estimates better).";
    const percent = (100 * estimate.estimated_rate).toFixed(1);
    const pairs = estimate.pairs.map((pair) => {
      const review = `/ui/jobs/${jobId}/review?` + new URLSearchParams({ given: pair.given, likely: pair.likely });
      return h("tr", {},
        h("td", {}, h("a", { href: review, class: "pair-link" }, `${pair.given} → ${pair.likely}`)),
        h("td", { class: "num" }, about(pair.estimated_errors)),
        h("td", { class: "num" }, String(pair.found)));
    });
    const classes = estimate.classes.filter((c) => c.samples > 0).map((c) => h("tr", {},
      h("td", {}, c.label), h("td", { class: "num" }, String(c.samples)),
      h("td", { class: "num" }, about(c.estimated_errors)),
      h("td", { class: "num" }, String(c.reviewed)), h("td", { class: "num" }, String(c.found))));
    section.replaceChildren(
      h("h2", {}, "Label errors"),
      h("p", { id: "estimate-summary" },
        `About ${about(estimate.estimated_errors)} likely errors (${percent}% of ${estimate.num_samples.toLocaleString()} samples), ` +
        `${estimate.reviewed.toLocaleString()} reviewed, ${estimate.found.toLocaleString()} found.`),
      h("p", { class: "muted" },
        `${source} Classes the model itself confuses count its mistakes too. Reviewed samples count what the reviewers found.`),
      pairs.length
        ? table(["given → likely", "estimated errors", "found"], pairs)
        : h("p", { class: "muted" }, "No confusion between labels stands out."),
      h("details", {}, h("summary", {}, "Per given label"),
        table(["label", "samples", "estimated errors", "reviewed", "found"], classes)));
    section.hidden = false;
  }

  let retry = null;

  async function load() {
    clearTimeout(retry);
    const { status, body } = await getJson(`/jobs/${jobId}/noise-estimate`);
    if (status === 200) return render(body);
    if (status !== 409) return;
    const job = await getJson(`/jobs/${jobId}?trajectory=false`);
    if (job.status === 200 && !TERMINAL.has(job.body.status)) retry = setTimeout(load, RETRY_MS);  // not finished yet
  }

  document.addEventListener("visibilitychange", () => { if (!document.hidden) load(); });
  load();
})();
