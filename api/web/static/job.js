// The job page: live progress while the job runs, then alpha/beta/delta over training, the
// default score's histogram and every score's ROC and precision-recall curves.
"use strict";

(() => {
  const page = JSON.parse(document.getElementById("page-data").textContent);
  const jobUrl = `/jobs/${page.job_id}`;
  const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
  const PARAMETER_COLORS = { alpha: "#2f5fd0", beta: "#e08a1e", delta: "#8e44ad" };
  const FLAG_COLORS = { mislabeled: "#d1495b", clean: "#2a9d6f", unknown: "#a7afba" };
  const CURVE_COLORS = ["#2f5fd0", "#d1495b", "#2a9d6f", "#e08a1e", "#8e44ad", "#17a2b8"];
  const QUANTITIES = {
    w_alpha: "mean Wα over epochs", w_beta: "mean Wβ", w_delta: "mean Wδ", w: "mean W",
    aum: "mean logit margin", datamaps_confidence: "mean p(label)", loss: "mean loss", el2n: "mean EL2N",
  };
  const $ = (id) => document.getElementById(id);

  async function getJson(url) {
    const response = await fetch(url, { credentials: "same-origin" });
    if (response.status === 401) location.href = `/ui/login?next=${encodeURIComponent(location.pathname)}`;
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || response.statusText);
    return body;
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    if (seconds < 90) return `${Math.round(seconds)} s`;
    return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  }

  function showProgress(job) {
    const status = $("status");
    status.textContent = job.status;
    status.className = `status status-${job.status}`;
    const { epoch, total_epochs: epochs, step, total_steps: steps, eta_seconds: eta } = job.progress;
    const fraction = job.status === "succeeded" ? 1 : steps ? step / steps : 0;
    $("progress-bar").style.width = `${(100 * fraction).toFixed(1)}%`;
    $("progress-bar").classList.toggle("done", job.status === "succeeded");
    $("progress").setAttribute("aria-valuenow", Math.round(100 * fraction));
    const lines = {
      queued: "Waiting for a worker…",
      running: `Epoch ${epoch} of ${epochs} · step ${step} of ${steps ?? "?"}${eta ? ` · about ${duration(eta)} left` : ""}`,
      succeeded: `Done: ${epochs} epochs${job.timings?.wall_seconds ? ` in ${duration(job.timings.wall_seconds)}` : ""}` +
        `${job.result?.device ? ` on ${job.result.device}` : ""}.`,
      failed: "The job failed.",
      cancelled: "The job was cancelled.",
    };
    $("progress-text").textContent = lines[job.status];
    if (job.error) {
      $("job-error").hidden = false;
      $("job-error").textContent = job.error;
    }
  }

  function drawTrajectory(job) {
    const points = job.trajectory || [];
    const target = $("trajectory");
    target.replaceChildren();
    if (!points.length) return;
    const perEpoch = job.progress.total_steps && job.progress.total_epochs
      ? job.progress.total_steps / job.progress.total_epochs : Math.max(...points.map((p) => p.step), 1);
    const x = (p) => p.epoch - 1 + p.step / perEpoch;
    const epochs = job.progress.total_epochs || Math.max(...points.map((p) => p.epoch));
    const ticks = Array.from({ length: epochs + 1 }, (_, i) => i).filter((i) => epochs <= 10 || i % Math.ceil(epochs / 10) === 0);
    for (const name of ["alpha", "beta", "delta"]) {
      Charts.line(target, {
        width: 215, height: 200, title: name === "alpha" ? "α" : name === "beta" ? "β" : "δ", xLabel: "epoch",
        xDomain: [0, epochs], xTicks: ticks, marks: ticks,
        series: [{ points: points.map((p) => [x(p), p[name]]), color: PARAMETER_COLORS[name], width: 2 }],
      });
    }
  }

  function drawHistogram(charts) {
    const quantity = QUANTITIES[charts.score] || charts.score;
    $("histogram-caption").textContent =
      `${quantity} of every sample; ${charts.suspicious_when} is suspicious. ` +
      `${charts.num_known} samples have a known flag (${charts.num_mislabeled} mislabeled).`;
    const target = $("histogram");
    target.replaceChildren();
    Charts.histogram(target, {
      width: 440, height: 200, xLabel: quantity, edges: charts.histogram.edges,
      stacks: ["mislabeled", "clean", "unknown"].map((name) => ({
        label: name, color: FLAG_COLORS[name], counts: charts.histogram.counts[name],
      })),
    });
    const legend = document.createElement("p");
    legend.className = "muted";
    for (const name of ["mislabeled", "clean", "unknown"]) {
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = FLAG_COLORS[name];
      legend.append(swatch, ` ${name} `);
    }
    target.appendChild(legend);
  }

  function drawCurves(charts, metrics) {
    const names = Object.keys(charts.curves);
    $("flags-caption").textContent = names.length
      ? `Known flags: ${charts.flags_source}; ${charts.num_known} samples, ${charts.num_mislabeled} mislabeled. ` +
        "Mislabeled is the positive class of the precision-recall curve."
      : `No curves yet: they need known mislabeled and known clean samples (${charts.flags_source}). ` +
        "Decisions made in the review become known flags.";
    const ranked = names.sort((a, b) => charts.curves[b].auroc - charts.curves[a].auroc);
    const shown = [metrics.default_score, ...ranked.filter((n) => n !== metrics.default_score)]
      .filter((n) => charts.curves[n]).slice(0, CURVE_COLORS.length);
    const color = Object.fromEntries(shown.map((name, i) => [name, CURVE_COLORS[i]]));
    const series = (xKey, yKey) => shown.map((name) => ({
      label: name, color: color[name], width: name === metrics.default_score ? 2.5 : 1.3,
      points: charts.curves[name][xKey].map((v, i) => [v, charts.curves[name][yKey][i]]),
    }));
    for (const [id, title, xKey, yKey, xLabel, yLabel, diagonal] of [
      ["roc", "ROC", "fpr", "tpr", "false positive rate", "true positive rate", true],
      ["pr", "Precision-recall", "recall", "precision", "recall", "precision", false],
    ]) {
      $(id).replaceChildren();
      if (shown.length) {
        Charts.line($(id), {
          width: 300, height: 250, title, xLabel, yLabel, diagonal,
          xDomain: [0, 1], yDomain: [0, 1], series: series(xKey, yKey),
        });
      }
    }
    drawMetricsTable(metrics, color);
  }

  function drawMetricsTable(metrics, color) {
    const table = $("metrics-table");
    table.replaceChildren();
    const rows = metrics.scores.filter((entry) => entry.aggregate.all);
    if (!rows.length) return;
    rows.sort((a, b) => (b.aggregate.all.auroc ?? -1) - (a.aggregate.all.auroc ?? -1));
    const head = table.createTHead().insertRow();
    for (const [title, detail] of [
      ["score"], ["AUROC"], ["AUPRC", "mislabeled"], ["AUPRC", "clean"], ["P@10"], ["P@50"], ["P@100"],
    ]) {
      const cell = document.createElement("th");
      cell.textContent = title;
      if (detail) {
        const sub = document.createElement("span");
        sub.className = "sub";
        sub.textContent = detail;
        cell.append(document.createElement("br"), sub);
      }
      head.appendChild(cell);
    }
    const body = table.createTBody();
    const fmt = (v) => (v === null || v === undefined ? "–" : v.toFixed(3));
    for (const entry of rows) {
      const all = entry.aggregate.all;
      const row = body.insertRow();
      row.title = entry.orientation;
      if (entry.score === metrics.default_score) row.className = "default";
      const name = row.insertCell();
      if (color[entry.score]) {
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.background = color[entry.score];
        name.appendChild(swatch);
      }
      name.append(` ${entry.score}${entry.score === metrics.default_score ? " (default)" : ""}`);
      const precision = all.precision_at_k || {};
      for (const value of [all.auroc, all.auprc_mislabeled, all.auprc_clean, precision["10"], precision["50"], precision["100"]]) {
        row.insertCell().textContent = fmt(value);
      }
    }
  }

  async function drawResults() {
    const [job, charts, metrics] = await Promise.all([
      getJson(`${jobUrl}?max_points=600`), getJson(`${jobUrl}/charts`), getJson(`${jobUrl}/metrics`),
    ]);
    drawTrajectory(job);
    drawHistogram(charts);
    drawCurves(charts, metrics);
    document.body.dataset.ready = "true";
  }

  async function poll() {
    try {
      const job = await getJson(`${jobUrl}?trajectory=false`);
      showProgress(job);
      if (!TERMINAL.has(job.status)) {
        setTimeout(poll, 1000);
      } else if (job.status === "succeeded") {
        await drawResults();
      }
    } catch (error) {
      $("job-error").hidden = false;
      $("job-error").textContent = error.message;
      setTimeout(poll, 3000);
    }
  }

  poll();
})();
