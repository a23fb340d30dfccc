// The adjudication page: every sample the reviewers disagree on (GET /jobs/N/conflicts) with each
// reviewer's verdict and the comments on it; a button per final verdict (POST /jobs/N/adjudications).
"use strict";

(() => {
  const page = JSON.parse(document.getElementById("page-data").textContent);
  const { job_id: jobId, class_names: classNames } = page;
  const REMOVED = "(removed)";
  const $ = (id) => document.getElementById(id);
  const list = $("conflicts");

  async function api(method, url, body) {
    const headers = { "X-Requested-With": "lilaw-adjudicate" };
    if (body) headers["Content-Type"] = "application/json";
    const response = await fetch(url, { method, headers, credentials: "same-origin", body: body && JSON.stringify(body) });
    if (response.status === 401) location.href = `/ui/login?next=${encodeURIComponent(location.pathname)}`;
    const payload = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(payload.detail || response.statusText);
    return payload;
  }

  function h(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  const describe = (decision) => (decision.verdict === "relabel" ? `relabel to ${decision.label}` : decision.verdict);
  const outcomeText = (outcome) => (outcome === REMOVED ? "removed" : `label ${outcome}`);

  function button(text, onClick, attributes) {
    const node = h("button", { type: "button", ...attributes }, text);
    node.addEventListener("click", onClick);
    return node;
  }

  function commentForm(decision, sample) {
    const input = h("input", { placeholder: "comment", "aria-label": `comment on ${decision.reviewer}'s decision`, maxlength: 4000 });
    const form = h("form", { class: "actions" }, input, h("button", { type: "submit" }, "Comment"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!input.value.trim()) return;
      try {
        await api("POST", `/decisions/${decision.id}/comments`, { text: input.value });
        load();
      } catch (error) {
        status(error.message);
      }
    });
    return form;
  }

  function card(sample) {
    const resolved = sample.adjudication !== null;
    const verdicts = h("ul", { class: "verdict-list" }, ...sample.decisions.map((decision) =>
      h("li", { "data-reviewer": decision.reviewer },
        h("strong", {}, decision.reviewer), `: ${describe(decision)}`,
        ...decision.comments.map((comment) => h("div", { class: "comment" }, `${comment.author}: ${comment.text}`)),
        resolved ? null : commentForm(decision, sample))));
    const decide = (verdict, label) => adjudicate(sample, verdict, label);
    const others = classNames.filter((name) => name !== sample.label);
    const picker = h("select", { "aria-label": "relabel to" }, ...others.map((name) => h("option", { value: name }, name)));
    const suggested = sample.decisions.find((d) => d.verdict === "relabel");
    if (suggested) picker.value = suggested.label;
    const actions = resolved
      ? h("p", { class: "final" }, `Resolved by ${sample.adjudication.adjudicator}: ${outcomeText(sample.outcome)}`)
      : h("div", { class: "actions" },
          button(`Keep ${sample.label}`, () => decide("keep"), { "data-verdict": "keep" }),
          picker,
          button("Relabel", () => decide("relabel", picker.value), { "data-verdict": "relabel" }),
          button("Remove", () => decide("remove"), { "data-verdict": "remove" }));
    return h("li", { class: `conflict-card${resolved ? " resolved" : ""}`, id: `conflict-${sample.sample_index}`, "data-sample-index": sample.sample_index },
      sample.thumbnail_url ? h("img", { src: sample.thumbnail_url, alt: `sample ${sample.sample_id}` }) : h("div"),
      h("div", {},
        h("div", {}, h("strong", {}, `#${sample.rank ?? "–"} · ${sample.sample_id}`), ` · given label ${sample.label}${sample.blind ? " · blind" : ""}`),
        verdicts,
        actions));
  }

  function status(text) { $("conflicts-status").textContent = text; }

  async function adjudicate(sample, verdict, label) {
    try {
      await api("POST", `/jobs/${jobId}/adjudications`, { sample_index: sample.sample_index, verdict, label: label ?? null });
      const done = `Sample ${sample.sample_id}: ${verdict === "relabel" ? `relabelled to ${label}` : verdict === "keep" ? `kept as ${sample.label}` : "removed"}.`;
      await load();  // the list first, so that what was just done is the message left shown
      status(done);
    } catch (error) {
      status(error.message);
    }
  }

  async function load() {
    try {
      const found = await api("GET", `/jobs/${jobId}/conflicts?include_resolved=${$("show-resolved").checked}`);
      list.replaceChildren(...found.samples.map(card));
      if (!found.samples.length) status("No open conflicts.");
      else if (!$("conflicts-status").textContent) status(`${found.open} open conflict${found.open === 1 ? "" : "s"}.`);
      document.body.dataset.ready = "true";
    } catch (error) {
      status(error.message);
    }
  }

  $("show-resolved").addEventListener("change", load);
  load();
})();
