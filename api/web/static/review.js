// The review queue: suspects in rank order, one decision per keystroke, click or tap.
//
// Every decision is bound to the sample shown when its key was pressed and gets a client id at
// that moment; the outbox (outbox.js) sends decisions and undos one at a time, in order,
// retrying failed sends, and keeps them in localStorage so that a reload resumes them. The
// "reviewed" counter moves only when the server has stored a change. Undo works back through
// the reviewer's own decisions, loaded from the server.
"use strict";

(() => {
  const page = JSON.parse(document.getElementById("page-data").textContent);
  const { job_id: jobId, class_names: classNames, modality, reviewer } = page;
  const PAGE_SIZE = 30;
  const LOOKAHEAD = 5;
  const UNDO_HISTORY = 50;
  const COMMENT_SHOWN = 140; // characters of the latest comment on a card
  const COMMANDS = new Set(["k", "x", "s", "u", "r", "/", "?"]);
  const CLASS_KEY_SEQUENCE = "1234567890qwetyiopadfghjlzcvbnm";
  const WEIGHT_COLORS = { w_alpha: "#2f5fd0", w_beta: "#e08a1e", w_delta: "#8e44ad" };
  const SERIES_COLORS = ["#17203a", "#2f5fd0", "#e08a1e"];
  const REMOVED = "(removed)";

  const $ = (id) => document.getElementById(id);
  const queue = $("queue");
  const state = {
    items: [], cards: [], cursor: null, done: false, loading: null, current: -1, progress: null,
    generation: 0, abort: null, waiting: false,
  };
  const undoStack = []; // {decisionId, clientId, sampleIndex, sampleId}, newest last
  const outbox = Outbox.create({
    storageKey: `lilaw-review-outbox:${jobId}:${reviewer}`,
    send,
    refused,
    changed: (entry) => {
      showCounts();
      if (entry) refreshSample(entry.sampleIndex);
    },
  });
  const classKeys = assignClassKeys(classNames);
  const keyClasses = new Map([...classKeys].map(([name, key]) => [key, name]));

  function assignClassKeys(names) {
    const lowered = names.map((name) => name.toLowerCase());
    const single = lowered.every((name) => name.length === 1 && !COMMANDS.has(name)) && new Set(lowered).size === names.length;
    if (single) return new Map(names.map((name, i) => [name, lowered[i]]));
    return new Map(names.slice(0, CLASS_KEY_SEQUENCE.length).map((name, i) => [name, CLASS_KEY_SEQUENCE[i]]));
  }

  function h(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value === true ? "" : value);
    }
    node.append(...children.filter((child) => child !== null && child !== undefined));
    return node;
  }

  class ApiError extends Error {
    constructor(message, status) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, url, body, signal) {
    const headers = { "X-Requested-With": "lilaw-review" };
    if (body) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(url, { method, headers, credentials: "same-origin", body: body && JSON.stringify(body), signal });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError("the server cannot be reached", 0);
    }
    if (response.status === 401) {
      location.href = `/ui/login?next=${encodeURIComponent(location.pathname + location.search)}`;
      throw new ApiError("logged out", 401);
    }
    const payload = await response.json().catch(() => ({}));
    if (!response.ok) throw new ApiError(payload.detail || response.statusText, response.status);
    return payload;
  }

  let toastTimer = null;
  function toast(message) {
    const node = $("toast");
    node.textContent = message;
    node.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { node.hidden = true; }, 2500);
  }

  // ------------------------------------------------------------ decisions, as the server counts them

  function outcome(decision) {
    if (decision.verdict === "remove") return REMOVED;
    return decision.verdict === "relabel" ? decision.label : decision.given_label;
  }

  function applies(decision, label) {
    return decision.verdict === "remove" || decision.given_label === label || (decision.verdict === "relabel" && decision.label === label);
  }

  function applicable(item) {
    return (item.review?.decisions || []).filter((decision) => applies(decision, item.label));
  }

  const isDecided = (item) => applicable(item).length > 0;
  const isConflict = (item) => new Set(applicable(item).map(outcome)).size > 1;
  const pendingFor = (sampleIndex) => outbox.pendingFor(sampleIndex);
  // Decided for moving on: stored, or a decision on its way.
  const isHandled = (item) => {
    const pending = pendingFor(item.sample_index);
    return pending ? pending.kind === "decide" : isDecided(item);
  };

  function describe(decision) {
    if (decision.verdict === "relabel") return `relabel to ${decision.label}`;
    return decision.verdict === "remove" ? "ambiguous · remove" : "keep";
  }

  function suggestion(item) {
    return item.top_classes.find((top) => top.label !== item.label)?.label ?? null;
  }

  // ------------------------------------------------------------ cards

  function preview(item) {
    if (item.thumbnail_url) {
      const full = `/jobs/${jobId}/samples/${item.sample_index}/image.png`;
      const button = h("button", { type: "button", class: "preview zoomable", title: "show the full-size image", "aria-label": `zoom sample ${item.sample_id}` },
        h("img", { src: item.thumbnail_url, alt: `sample ${item.sample_id}`, loading: "lazy" }));
      button.addEventListener("click", (event) => { event.stopPropagation(); button.blur(); openZoom(full, item.sample_id); });
      return button;
    }
    if (modality === "tabular") {
      const rows = item.values.slice(0, 10).map((value, i) => h("tr", {}, h("td", {}, `f${i}`), h("td", {}, String(value))));
      return h("div", { class: "preview row" }, h("table", {}, ...rows));
    }
    const box = h("div", { class: "preview" });
    Charts.sparkline(box, {
      width: 108, height: 90,
      series: item.values.map((values, i) => ({ values, color: SERIES_COLORS[i % SERIES_COLORS.length] })),
    });
    return box;
  }

  function modelList(item) {
    if (!item.top_classes.length) return null;
    const best = suggestion(item);
    const rows = item.top_classes.map((top) => {
      const bar = h("span");
      bar.style.width = `${(100 * top.probability).toFixed(1)}%`;
      const key = classKeys.get(top.label);
      const mark = top.label === item.label ? h("span", { class: "hint" }, "given") : top.label === best ? h("kbd", {}, "Enter") : h("span");
      return h("li", { class: top.label === item.label ? "is-given" : top.label === best ? "is-suggestion" : null },
        key ? h("kbd", {}, key) : h("span"),
        h("span", { class: "name" }, top.label),
        h("div", { class: "bar" }, bar),
        h("span", { class: "p" }, top.probability.toFixed(2)),
        mark);
    });
    return h("div", {}, h("span", { class: "tag" }, "MODEL"), h("ul", { class: "model", "aria-label": "the model's top classes" }, ...rows));
  }

  function evidence(item) {
    const box = h("div", { class: "evidence" },
      h("div", { class: "score", title: "the default score, higher = more suspicious" }, `${page.score} score ${item.score.toFixed(3)}`));
    if (item.weights) {
      Charts.sparkline(box, {
        width: 190, height: 56, yDomain: [0, 1],
        series: ["w_alpha", "w_beta", "w_delta"].map((name) => ({ values: item.weights[name], color: WEIGHT_COLORS[name] })),
      });
      const alphas = item.weights.w_alpha;
      box.appendChild(h("div", { class: "hint" }, `Wα ${fmt(alphas[0])} → ${fmt(alphas[alphas.length - 1])} over ${alphas.length} epochs`));
    }
    return box;
  }

  const fmt = (value) => (value === null || value === undefined ? "–" : value.toFixed(2));

  function verdicts(item) {
    const box = h("div", { class: "verdicts" });
    for (const decision of item.review?.decisions || []) {
      const mine = decision.reviewer === reviewer;
      const stale = !applies(decision, item.label);
      box.appendChild(h("span", { class: `chip ${decision.verdict}`, title: new Date(decision.created_at).toLocaleString() },
        `${mine ? "you" : decision.reviewer}: ${describe(decision)}${stale ? ` (judged ${decision.given_label})` : ""}`));
    }
    if (isConflict(item)) box.appendChild(h("span", { class: "chip conflict" }, "conflict"));
    const said = commentLine(item);
    if (said) box.appendChild(said);
    const pending = pendingFor(item.sample_index);
    if (pending) {
      const what = pending.kind === "undo" ? "undo" : describe(pending);
      const text = pending.failures ? `not saved yet (${pending.error}); retrying: you: ${what}` : `saving… you: ${what}`;
      box.appendChild(h("span", { class: `chip ${pending.failures ? "failed" : "pending"}`, "data-save-state": pending.failures ? "failed" : "pending" }, text));
    } else if (item.saveError) {
      box.appendChild(h("span", { class: "chip failed", "data-save-state": "refused" }, `not saved: ${item.saveError}`));
    }
    if (!box.childElementCount) box.appendChild(h("span", { class: "hint" }, "not reviewed yet"));
    return box;
  }

  // The comments on the decisions shown: how many, and the latest in full on hover.
  function commentLine(item) {
    const said = item.comments || [];
    if (!said.length) return null;
    const latest = said.at(-1);
    const text = latest.text.length > COMMENT_SHOWN ? `${latest.text.slice(0, COMMENT_SHOWN)}…` : latest.text;
    return h("div", { class: "hint comments", "data-comments": said.length, title: latest.text },
      `${said.length} comment${said.length > 1 ? "s" : ""} · latest, ${latest.author === reviewer ? "you" : latest.author}: ${text}`);
  }

  function actionButton(label, key, onClick, extra = {}) {
    const button = h("button", { type: "button", class: "act", ...extra }, label, key ? h("kbd", {}, key) : null);
    // Blurred, so that a key pressed next (Enter above all) is a decision, not this button again.
    button.addEventListener("click", (event) => { event.stopPropagation(); button.blur(); onClick(); });
    return button;
  }

  function actions(item, index) {
    const act = (fn) => () => { focus(index); fn(); };
    const best = suggestion(item);
    const others = item.top_classes.map((top) => top.label).filter((name) => name !== item.label && name !== best);
    return h("div", { class: "actions", role: "group", "aria-label": `decide on sample ${item.sample_id}` },
      actionButton("Keep", "k", act(() => decide("keep")), { "data-action": "keep" }),
      best ? actionButton(`Relabel to ${best}`, "Enter", act(() => decide("relabel", best)), { "data-action": "suggestion", class: "act primary" }) : null,
      ...others.map((name) => actionButton(`→ ${name}`, classKeys.get(name), act(() => decide("relabel", name)), { "data-action": `relabel-${name}` })),
      actionButton("Other class…", "r", act(openPicker), { "data-action": "pick" }),
      actionButton("Ambiguous", "x", act(() => decide("remove")), { "data-action": "remove" }),
      actionButton("Skip", "s", act(() => advance()), { "data-action": "skip" }));
  }

  function renderCard(item, index) {
    const link = `?sample=${encodeURIComponent(item.sample_id)}`;
    const card = h("li", { class: "card", id: `sample-${item.sample_index}`, "data-sample-index": item.sample_index },
      preview(item),
      h("div", { class: "about" },
        h("div", { class: "sample-head" },
          h("span", { class: "current-mark" }, "▶ current "),
          `#${item.rank} · `, h("a", { href: link, title: "link to this sample" }, item.sample_id),
          item.split ? ` · ${item.split}` : ""),
        h("div", { class: "given" }, h("span", { class: "tag" }, "LABEL"), item.label),
        modelList(item)),
      evidence(item),
      verdicts(item),
      actions(item, index));
    card.classList.toggle("decided", isHandled(item));
    card.addEventListener("click", (event) => { if (!event.target.closest("a, button")) focus(index); });
    return card;
  }

  function refreshCard(index) {
    const card = renderCard(state.items[index], index);
    if (index === state.current) markCurrent(card, true);
    state.cards[index].replaceWith(card);
    state.cards[index] = card;
  }

  function refreshSample(sampleIndex) {
    const index = state.items.findIndex((item) => item.sample_index === sampleIndex);
    if (index >= 0) refreshCard(index);
    return index;
  }

  // ------------------------------------------------------------ loading (the latest filters win)

  function filters() {
    const sample = $("f-sample").value.trim();
    return {
      label: $("f-label").value, split: $("f-split").value, min_score: $("f-min-score").value,
      status: sample ? "all" : $("f-status").value, sample_id: sample,
    };
  }

  function queueUrl(cursor, limit = PAGE_SIZE) {
    const params = new URLSearchParams({ limit });
    for (const [name, value] of Object.entries(filters())) if (value !== "") params.set(name, value);
    // A "given → likely" pair of the job page's noise estimate (estimate.js links here with it).
    for (const name of ["given", "likely"]) if (new URLSearchParams(location.search).get(name)) params.set(name, new URLSearchParams(location.search).get(name));
    if (cursor) params.set("cursor", cursor);
    return `/jobs/${jobId}/review-queue?${params}`;
  }

  function loadMore() {
    if (state.loading || state.done) return state.loading;
    const generation = state.generation;
    const signal = state.abort.signal;
    const loading = (async () => {
      try {
        const result = await api("GET", queueUrl(state.cursor), null, signal);
        if (generation !== state.generation) return; // the filters changed meanwhile
        if (result.progress) state.progress = result.progress;
        for (const item of result.items) {
          const index = state.items.length;
          state.items.push(item);
          state.cards.push(queue.appendChild(renderCard(item, index)));
        }
        state.cursor = result.next_cursor;
        state.done = !result.next_cursor;
        showCounts();
        const searched = filters().sample_id;
        $("queue-end").textContent = !state.done ? "" : state.items.length ? (searched ? "" : "End of the queue.")
          : searched ? `No sample ${searched} in this job.` : "Nothing to review with these filters.";
      } catch (error) {
        if (generation !== state.generation || error.name === "AbortError") return;
        $("queue-end").textContent = error.message;
        state.done = true;
      } finally {
        if (state.loading === loading) state.loading = null;
      }
    })();
    state.loading = loading;
    return loading;
  }

  async function reload() {
    state.abort?.abort();
    state.generation += 1;
    const generation = state.generation;
    Object.assign(state, { items: [], cards: [], cursor: null, done: false, current: -1, loading: null, abort: new AbortController() });
    queue.replaceChildren();
    document.body.dataset.ready = "false";
    document.body.dataset.filters = JSON.stringify(filters());
    await loadMore();
    if (generation !== state.generation) return;
    focus(0);
    document.body.dataset.ready = "true";
  }

  function showCounts() {
    const p = state.progress;
    if (p) {
      $("counts").replaceChildren(
        h("strong", { id: "count-decided" }, String(p.decided)), " reviewed · ",
        h("strong", { id: "count-remaining" }, String(p.remaining)), " remaining",
        p.conflicts ? ` · ${p.conflicts} conflict${p.conflicts > 1 ? "s" : ""}` : "",
        ` · reviewing as ${reviewer}`);
    }
    const failing = outbox.failing();
    const pending = outbox.entries.length;
    const saveState = $("save-state");
    saveState.dataset.pending = String(pending);
    saveState.classList.toggle("failed", Boolean(failing));
    saveState.textContent = !pending ? "all saved"
      : failing ? `${pending} not saved yet: ${failing.error}; retrying`
        : `saving ${pending}…`;
  }

  // The stopping point: how many label errors the job's noise estimate says the dataset (or the
  // "given → likely" pair the queue is opened on) holds, against what reviewers have found.
  let estimateTimer = null;
  function refreshEstimate(delay = 0) {
    clearTimeout(estimateTimer);
    estimateTimer = setTimeout(async () => {
      let estimate;
      try {
        estimate = await api("GET", `/jobs/${jobId}/noise-estimate?pairs=100`);
      } catch (error) {
        return; // no stored probabilities (older jobs): the line stays hidden
      }
      const query = new URLSearchParams(location.search);
      const pair = estimate.pairs.find((p) => p.given === query.get("given") && p.likely === query.get("likely"));
      const scope = pair ? `${pair.given} → ${pair.likely}` : "this dataset";
      const errors = Math.round(pair ? pair.estimated_errors : estimate.estimated_errors);
      const line = pair ? `${pair.found} found` : `${estimate.reviewed} reviewed · ${estimate.found} found`;
      $("estimate").textContent = `about ${errors} likely errors in ${scope} · ${line}`;
      $("estimate").hidden = false;
    }, delay);
  }

  // ------------------------------------------------------------ moving

  function markCurrent(card, current) {
    card.classList.toggle("current", current);
    if (current) card.setAttribute("aria-current", "true");
    else card.removeAttribute("aria-current");
  }

  function focus(index) {
    if (!state.items.length) return;
    index = Math.max(0, Math.min(index, state.items.length - 1));
    if (state.cards[state.current]) markCurrent(state.cards[state.current], false);
    state.current = index;
    state.waiting = false;
    markCurrent(state.cards[index], true);
    state.cards[index].scrollIntoView({ block: "nearest" });
    if (index >= state.items.length - LOOKAHEAD) loadMore();
  }

  // Moves to the next sample not yet decided; while more have to be loaded first there is no
  // current sample, so that keys pressed meanwhile act on nothing rather than on the last one.
  async function advance() {
    const generation = state.generation;
    const next = () => state.items.findIndex((item, i) => i > state.current && !isHandled(item));
    let found = next();
    if (found < 0 && !state.done) {
      if (state.cards[state.current]) markCurrent(state.cards[state.current], false);
      state.waiting = true;
      while (found < 0 && !state.done && generation === state.generation) {
        await loadMore();
        found = next();
      }
      if (generation !== state.generation) return;
    }
    focus(found < 0 ? state.current + 1 : found);
  }

  // ------------------------------------------------------------ deciding

  function decide(verdict, label = null) {
    if (state.waiting) {
      toast("Loading the next samples…");
      return;
    }
    const index = state.current;
    const item = state.items[index];
    if (!item) return;
    if (verdict === "relabel" && label === item.label) [verdict, label] = ["keep", null];
    delete item.saveError;
    const entry = outbox.add({
      kind: "decide", sampleIndex: item.sample_index, sampleId: item.sample_id, verdict, label, given_label: item.label,
    });
    undoStack.push({ clientId: entry.clientId, decisionId: null, sampleIndex: entry.sampleIndex, sampleId: entry.sampleId });
    refreshCard(index);
    toast(`${item.sample_id}: ${describe(entry)} — u undoes`);
    advance();
  }

  function undo() {
    const last = undoStack.pop();
    if (!last) {
      toast("Nothing to undo");
      return;
    }
    // A decision never sent leaves the outbox: there is nothing to undo on the server.
    if (!outbox.withdraw(last.clientId)) {
      outbox.add({ kind: "undo", sampleIndex: last.sampleIndex, sampleId: last.sampleId, decisionId: last.decisionId, targetClientId: last.clientId });
    }
    const index = refreshSample(last.sampleIndex);
    if (index >= 0) focus(index);
    toast(`${last.sampleId}: undone`);
  }

  async function send(entry) {
    if (entry.kind === "decide") {
      const decision = await api("POST", `/jobs/${jobId}/decisions`, {
        sample_index: entry.sampleIndex, verdict: entry.verdict, label: entry.label, client_id: entry.clientId,
      });
      const undoEntry = undoStack.find((e) => e.clientId === entry.clientId);
      if (undoEntry) undoEntry.decisionId = decision.id;
      storedChange(entry.sampleIndex, (item) => replaceMine(item, decision));
      refreshEstimate(1000);
      return decision;
    }
    if (entry.decisionId === null || entry.decisionId === undefined) return; // its decision was refused
    try {
      await api("POST", `/decisions/${entry.decisionId}/undo`);
    } catch (error) {
      if (error.status !== 409) throw error; // 409: undone already (an earlier try got through)
    }
    await afterUndo(entry.sampleIndex, entry.sampleId);
  }

  function refused(entry, error) {
    toast(`${entry.sampleId}: not saved: ${error.message}`);
    const undoIndex = undoStack.findIndex((e) => e.clientId === entry.clientId);
    if (undoIndex >= 0) undoStack.splice(undoIndex, 1);
    const item = state.items.find((candidate) => candidate.sample_index === entry.sampleIndex);
    if (item) item.saveError = error.message;
  }

  function storedChange(sampleIndex, change) {
    const item = state.items.find((candidate) => candidate.sample_index === sampleIndex);
    if (!item) return;
    const before = [isDecided(item), isConflict(item)];
    change(item);
    countChange(before[0], isDecided(item), before[1], isConflict(item));
  }

  // After an undo the reviewer's previous decision on the sample counts again: the sample and
  // the counts are read back rather than guessed.
  async function afterUndo(sampleIndex, sampleId) {
    const generation = state.generation;
    const params = new URLSearchParams({ sample_id: sampleId, status: "all", limit: 1 });
    const [one, counts] = await Promise.all([
      api("GET", `/jobs/${jobId}/review-queue?${params}`), api("GET", queueUrl(null, 1)),
    ]);
    if (generation !== state.generation) return;
    const item = state.items.find((candidate) => candidate.sample_index === sampleIndex);
    if (item && one.items[0]) item.review = one.items[0].review;
    if (counts.progress) state.progress = counts.progress;
    showCounts();
  }

  function countChange(before, after, conflictBefore, conflictAfter) {
    if (!state.progress) return;
    const decided = Number(after) - Number(before);
    state.progress.decided += decided;
    state.progress.remaining -= decided;
    state.progress.conflicts += Number(conflictAfter) - Number(conflictBefore);
    showCounts();
  }

  function replaceMine(item, decision) {
    const decisions = item.review?.decisions || [];
    const others = decisions.filter((d) => d.reviewer !== reviewer);
    item.review = { ...(item.review || {}), decisions: decision ? [...others, decision] : others };
  }

  async function loadUndoHistory() {
    try {
      const mine = await api("GET", `/jobs/${jobId}/decisions/mine?limit=${UNDO_HISTORY}`);
      const known = new Set(undoStack.map((entry) => entry.clientId));
      const undoing = new Set(outbox.entries.filter((e) => e.kind === "undo").flatMap((e) => [e.decisionId, e.targetClientId]));
      const history = mine.reverse()
        .filter((d) => !(d.client_id && known.has(d.client_id)) && !undoing.has(d.id) && !undoing.has(d.client_id))
        .map((d) => ({ clientId: d.client_id, decisionId: d.id, sampleIndex: d.sample_index, sampleId: d.sample_id }));
      undoStack.unshift(...history);
    } catch (error) {
      toast(`Undo history not loaded: ${error.message}`);
    }
  }

  function restoreOutbox() {
    for (const entry of outbox.restore()) {
      if (entry.kind === "decide") undoStack.push({ clientId: entry.clientId, decisionId: null, sampleIndex: entry.sampleIndex, sampleId: entry.sampleId });
      else {
        const target = undoStack.findIndex((e) => e.clientId === entry.targetClientId || (entry.decisionId && e.decisionId === entry.decisionId));
        if (target >= 0) undoStack.splice(target, 1);
      }
    }
  }

  window.addEventListener("beforeunload", (event) => {
    if (outbox.entries.length) event.preventDefault(); // kept in localStorage too, but say so
  });

  // ------------------------------------------------------------ class picker (any number of classes)

  function openPicker() {
    const item = state.items[state.current];
    if (!item || state.waiting) return;
    const first = item.top_classes.map((top) => top.label).filter((name) => name !== item.label);
    const order = [...first, ...classNames.filter((name) => !first.includes(name) && name !== item.label)];
    const input = $("picker-input");
    const list = $("picker-list");
    const matches = () => order.filter((name) => name.toLowerCase().includes(input.value.trim().toLowerCase()));
    const show = () => list.replaceChildren(...matches().slice(0, 50).map((name) => {
      const entry = h("li", {}, h("button", { type: "button" }, name));
      entry.addEventListener("click", (event) => { event.preventDefault(); close(); decide("relabel", name); });
      return entry;
    }));
    const close = () => { $("picker").hidden = true; input.onkeydown = null; input.oninput = null; };
    input.value = "";
    input.oninput = show;
    input.onkeydown = (event) => {
      if (event.key === "Escape") { close(); event.preventDefault(); }
      if (event.key === "Enter") {
        const name = matches()[0];
        close();
        event.preventDefault();
        if (name) decide("relabel", name);
      }
    };
    $("picker").onclick = (event) => { if (event.target === $("picker")) close(); };
    show();
    $("picker").hidden = false;
    input.focus();
  }

  // ------------------------------------------------------------ overlays: keys and zoom

  function openOverlay(id) {
    const overlay = $(id);
    overlay.hidden = false;
    overlay.querySelector("[data-close]").focus();
  }

  function closeOverlays() {
    let closed = false;
    for (const overlay of document.querySelectorAll(".overlay:not([hidden])")) {
      overlay.hidden = true;
      closed = true;
    }
    return closed;
  }

  function openZoom(url, sampleId) {
    const image = $("zoom-image");
    image.src = url;
    image.alt = `sample ${sampleId} at full size`;
    $("zoom-caption").textContent = sampleId;
    openOverlay("zoom");
  }

  function keyRows() {
    const rows = [
      [["↑", "↓"], "previous / next sample"],
      [["Enter"], "relabel to the model's suggestion"],
      [["k"], "keep the label"],
      [["x"], "ambiguous: remove the sample"],
      [["s"], "skip for now"],
      [["u"], "undo your last decision (also Ctrl+Z)"],
      [["r"], "relabel: pick a class by name"],
      [["?"], "show these keys"],
      [["Esc"], "close a window, leave a field"],
    ];
    const list = [];
    list.push(...rows.flatMap(([keys, what]) => [h("dt", {}, ...keys.map((key) => h("kbd", {}, key))), h("dd", {}, what)]));
    if (classKeys.size) {
      const keys = [...classKeys.values()];
      list.push(
        h("dt", {}, h("kbd", {}, keys[0]), "–", h("kbd", {}, keys[keys.length - 1])),
        h("dd", {}, "relabel to that class (the sample's own class keeps it)"),
        h("dd", { class: "class-keys" }, ...[...classKeys].map(([name, key]) => h("span", {}, h("kbd", {}, key), ` ${name}  `))));
    }
    return list;
  }

  function showKeys() {
    $("key-list").replaceChildren(...keyRows());
    $("help-list").replaceChildren(...keyRows());
  }

  // ------------------------------------------------------------ keyboard

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || !$("picker").hidden) return;
    if (event.key === "Escape" && closeOverlays()) {
      event.preventDefault();
      return;
    }
    if (document.querySelector(".overlay:not([hidden])")) {
      if (event.key === "?") { closeOverlays(); event.preventDefault(); }
      return;
    }
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
      event.preventDefault();
      undo();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("input, select, textarea")) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    if (event.target.closest("button, a") && (event.key === "Enter" || event.key === " ")) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    const item = state.items[state.current];
    const actions = {
      ArrowDown: () => focus(state.current + 1),
      ArrowUp: () => focus(state.current - 1),
      Enter: () => { const best = item && suggestion(item); if (best) decide("relabel", best); },
      k: () => decide("keep"),
      x: () => decide("remove"),
      s: () => { if (!state.waiting) advance(); },
      u: () => undo(),
      r: () => openPicker(),
      "/": () => openPicker(),
      "?": () => openOverlay("help"),
    };
    const action = actions[key] || (keyClasses.has(key) && (() => decide("relabel", keyClasses.get(key))));
    if (!action) return;
    event.preventDefault();
    action();
  });

  for (const id of ["f-label", "f-split", "f-status", "f-min-score"]) {
    $(id).addEventListener("change", () => { document.activeElement.blur(); reload(); });
  }
  function search() {
    const sample = $("f-sample").value.trim();
    const url = new URL(location.href);
    if (sample) url.searchParams.set("sample", sample);
    else url.searchParams.delete("sample");
    history.replaceState(null, "", url);
    reload();
  }
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); document.activeElement.blur(); search(); });
  $("f-sample").addEventListener("search", search);
  $("undo-button").addEventListener("click", (event) => { event.currentTarget.blur(); undo(); });
  $("help-button").addEventListener("click", (event) => { event.currentTarget.blur(); openOverlay("help"); });
  for (const overlay of document.querySelectorAll(".overlay")) {
    overlay.addEventListener("click", (event) => {
      if (event.target === overlay || event.target.closest("[data-close]")) overlay.hidden = true;
    });
  }

  $("f-sample").value = new URLSearchParams(location.search).get("sample") || "";
  showKeys();
  restoreOutbox();
  showCounts();
  refreshEstimate();
  (async () => {
    await loadUndoHistory();
    outbox.pump();
  })();
  reload();
})();
