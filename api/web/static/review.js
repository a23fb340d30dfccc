// The review queue: suspects in rank order, one decision per keystroke.
"use strict";

(() => {
  const page = JSON.parse(document.getElementById("page-data").textContent);
  const { job_id: jobId, class_names: classNames, modality, reviewer } = page;
  const PAGE_SIZE = 30;
  const LOOKAHEAD = 5;
  const COMMANDS = new Set(["k", "x", "s", "u", "r", "/", "?"]);
  const CLASS_KEY_SEQUENCE = "1234567890qwetyiopadfghjlzcvbnm";
  const WEIGHT_COLORS = { w_alpha: "#2f5fd0", w_beta: "#e08a1e", w_delta: "#8e44ad" };
  const SERIES_COLORS = ["#17203a", "#2f5fd0", "#e08a1e"];
  const REMOVED = "(removed)";

  const $ = (id) => document.getElementById(id);
  const queue = $("queue");
  const state = { items: [], cards: [], cursor: null, done: false, loading: null, current: -1, undo: [], progress: null };
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

  async function api(method, url, body) {
    const headers = { "X-Requested-With": "lilaw-review" };
    if (body) headers["Content-Type"] = "application/json";
    const response = await fetch(url, { method, headers, credentials: "same-origin", body: body && JSON.stringify(body) });
    if (response.status === 401) {
      location.href = `/ui/login?next=${encodeURIComponent(location.pathname)}`;
      throw new Error("logged out");
    }
    const payload = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(payload.detail || response.statusText);
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
      return h("div", { class: "preview" }, h("img", { src: item.thumbnail_url, alt: `sample ${item.sample_id}`, loading: "lazy" }));
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
        h("span", {}, top.label),
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
    if (!box.childElementCount) box.appendChild(h("span", { class: "hint" }, "not reviewed yet"));
    return box;
  }

  function renderCard(item, index) {
    const card = h("li", { class: "card", id: `sample-${item.sample_index}`, "data-sample-index": item.sample_index },
      preview(item),
      h("div", {},
        h("div", { class: "sample-head" }, `#${item.rank} · ${item.sample_id}${item.split ? ` · ${item.split}` : ""}`),
        h("div", { class: "given" }, h("span", { class: "tag" }, "LABEL"), item.label),
        modelList(item)),
      evidence(item),
      verdicts(item));
    card.classList.toggle("decided", isDecided(item));
    card.addEventListener("click", () => focus(index));
    return card;
  }

  function refreshCard(index) {
    const card = renderCard(state.items[index], index);
    if (index === state.current) card.classList.add("current");
    state.cards[index].replaceWith(card);
    state.cards[index] = card;
  }

  // ------------------------------------------------------------ loading

  function filters() {
    return {
      label: $("f-label").value, split: $("f-split").value,
      min_score: $("f-min-score").value, status: $("f-status").value,
    };
  }

  function queueUrl() {
    const params = new URLSearchParams({ limit: PAGE_SIZE });
    for (const [name, value] of Object.entries(filters())) if (value !== "") params.set(name, value);
    if (state.cursor) params.set("cursor", state.cursor);
    return `/jobs/${jobId}/review-queue?${params}`;
  }

  function loadMore() {
    if (state.loading || state.done) return state.loading;
    state.loading = (async () => {
      try {
        const result = await api("GET", queueUrl());
        if (result.progress) state.progress = result.progress;
        for (const item of result.items) {
          const index = state.items.length;
          state.items.push(item);
          state.cards.push(queue.appendChild(renderCard(item, index)));
        }
        state.cursor = result.next_cursor;
        state.done = !result.next_cursor;
        showCounts();
        $("queue-end").textContent = state.done ? (state.items.length ? "End of the queue." : "Nothing to review with these filters.") : "";
      } catch (error) {
        $("queue-end").textContent = error.message;
        state.done = true;
      } finally {
        state.loading = null;
      }
    })();
    return state.loading;
  }

  async function reload() {
    Object.assign(state, { items: [], cards: [], cursor: null, done: false, current: -1 });
    queue.replaceChildren();
    await loadMore();
    focus(0);
    document.body.dataset.ready = "true";
  }

  function showCounts() {
    const counts = $("counts");
    const p = state.progress;
    if (!p) return;
    counts.replaceChildren(
      h("strong", { id: "count-decided" }, String(p.decided)), " reviewed · ",
      h("strong", { id: "count-remaining" }, String(p.remaining)), " remaining",
      p.conflicts ? ` · ${p.conflicts} conflict${p.conflicts > 1 ? "s" : ""}` : "",
      ` · reviewing as ${reviewer}`);
  }

  // ------------------------------------------------------------ moving and deciding

  function focus(index) {
    if (!state.items.length) return;
    index = Math.max(0, Math.min(index, state.items.length - 1));
    state.cards[state.current]?.classList.remove("current");
    state.current = index;
    state.cards[index].classList.add("current");
    state.cards[index].scrollIntoView({ block: "nearest" });
    if (index >= state.items.length - LOOKAHEAD) loadMore();
  }

  async function advance() {
    let next = state.items.findIndex((item, i) => i > state.current && !isDecided(item));
    while (next < 0 && !state.done) {
      await loadMore();
      next = state.items.findIndex((item, i) => i > state.current && !isDecided(item));
    }
    focus(next < 0 ? state.current + 1 : next);
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
    const previous = decisions.find((d) => d.reviewer === reviewer) || null;
    const others = decisions.filter((d) => d.reviewer !== reviewer);
    item.review = { ...(item.review || {}), decisions: decision ? [...others, decision] : others };
    return previous;
  }

  async function decide(verdict, label = null) {
    const index = state.current;
    const item = state.items[index];
    if (!item) return;
    if (verdict === "relabel" && label === item.label) [verdict, label] = ["keep", null];
    const before = [isDecided(item), isConflict(item)];
    let decision;
    try {
      decision = await api("POST", `/jobs/${jobId}/decisions`, { sample_index: item.sample_index, verdict, label });
    } catch (error) {
      toast(error.message);
      return;
    }
    const previous = replaceMine(item, decision);
    state.undo.push({ decision, previous, index });
    countChange(before[0], isDecided(item), before[1], isConflict(item));
    refreshCard(index);
    toast(`${item.sample_id}: ${describe(decision)} — u undoes`);
    await advance();
  }

  async function undo() {
    const entry = state.undo.pop();
    if (!entry) {
      toast("Nothing to undo");
      return;
    }
    try {
      await api("POST", `/decisions/${entry.decision.id}/undo`);
    } catch (error) {
      toast(error.message);
      return;
    }
    const item = state.items[entry.index];
    const before = [isDecided(item), isConflict(item)];
    replaceMine(item, entry.previous);
    countChange(before[0], isDecided(item), before[1], isConflict(item));
    refreshCard(entry.index);
    focus(entry.index);
    toast(`${item.sample_id}: undone`);
  }

  // ------------------------------------------------------------ class picker (any number of classes)

  function openPicker() {
    const item = state.items[state.current];
    if (!item) return;
    const first = item.top_classes.map((top) => top.label).filter((name) => name !== item.label);
    const order = [...first, ...classNames.filter((name) => !first.includes(name) && name !== item.label)];
    const input = $("picker-input");
    const list = $("picker-list");
    const matches = () => order.filter((name) => name.toLowerCase().includes(input.value.trim().toLowerCase()));
    const show = () => list.replaceChildren(...matches().slice(0, 50).map((name) => {
      const entry = h("li", {}, name);
      entry.addEventListener("mousedown", (event) => { event.preventDefault(); close(); decide("relabel", name); });
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
    show();
    $("picker").hidden = false;
    input.focus();
  }

  // ------------------------------------------------------------ keyboard

  function showKeys() {
    const rows = [
      [["↑", "↓"], "previous / next sample"],
      [["Enter"], "relabel to the model's suggestion"],
      [["k"], "keep the label"],
      [["x"], "ambiguous: remove the sample"],
      [["s"], "skip for now"],
      [["u"], "undo your last decision"],
      [["r"], "relabel: pick a class by name"],
    ];
    const list = $("key-list");
    list.replaceChildren(...rows.flatMap(([keys, what]) => [h("dt", {}, ...keys.map((key) => h("kbd", {}, key))), h("dd", {}, what)]));
    if (classKeys.size) {
      const keys = [...classKeys.values()];
      list.append(
        h("dt", {}, h("kbd", {}, keys[0]), "–", h("kbd", {}, keys[keys.length - 1])),
        h("dd", {}, "relabel to that class (the sample's own class keeps it)"));
      list.append(h("dd", { class: "class-keys" }, ...[...classKeys].map(([name, key]) => h("span", {}, h("kbd", {}, key), ` ${name}  `))));
    }
  }

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || !$("picker").hidden) return;
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
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    const item = state.items[state.current];
    const actions = {
      ArrowDown: () => focus(state.current + 1),
      ArrowUp: () => focus(state.current - 1),
      Enter: () => { const best = item && suggestion(item); if (best) decide("relabel", best); },
      k: () => decide("keep"),
      x: () => decide("remove"),
      s: () => advance(),
      u: () => undo(),
      r: () => openPicker(),
      "/": () => openPicker(),
    };
    const action = actions[key] || (keyClasses.has(key) && (() => decide("relabel", keyClasses.get(key))));
    if (!action) return;
    event.preventDefault();
    action();
  });

  for (const id of ["f-label", "f-split", "f-status", "f-min-score"]) {
    $(id).addEventListener("change", () => { document.activeElement.blur(); reload(); });
  }
  $("filters").addEventListener("submit", (event) => event.preventDefault());

  showKeys();
  reload();
})();
