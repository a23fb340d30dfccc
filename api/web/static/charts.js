// Inline SVG charts: line charts, stacked histograms and sparklines. No dependencies.
"use strict";

const Charts = (() => {
  const SVG = "http://www.w3.org/2000/svg";
  const MARGIN = { top: 22, right: 10, bottom: 32, left: 42 };

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(parent, x, y, content, attrs) {
    const node = el("text", { x, y, ...attrs }, parent);
    node.textContent = content;
    return node;
  }

  function scale([d0, d1], [r0, r1]) {
    const span = d1 - d0 || 1;
    return (v) => r0 + ((v - d0) / span) * (r1 - r0);
  }

  function niceTicks([lo, hi], count = 5) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / count;
    const power = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw);
    const ticks = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(+v.toFixed(10));
    return ticks;
  }

  function extent(values) {
    const finite = values.filter((v) => v !== null && Number.isFinite(v));
    if (!finite.length) return [0, 1];
    let lo = Math.min(...finite), hi = Math.max(...finite);
    if (lo === hi) { lo -= 0.5; hi += 0.5; }
    return [lo, hi];
  }

  function frame(container, { width, height, title, xLabel, yLabel }) {
    const svg = el("svg", { class: "chart", width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
    if (title) {
      svg.setAttribute("aria-label", title);
      text(svg, MARGIN.left, 14, title, { class: "title" });
    }
    if (xLabel) text(svg, (MARGIN.left + width - MARGIN.right) / 2, height - 4, xLabel, { "text-anchor": "middle" });
    if (yLabel) {
      text(svg, 10, (MARGIN.top + height - MARGIN.bottom) / 2, yLabel, {
        "text-anchor": "middle",
        transform: `rotate(-90 10 ${(MARGIN.top + height - MARGIN.bottom) / 2})`,
      });
    }
    container.appendChild(svg);
    return svg;
  }

  function axes(svg, x, y, xTicks, yTicks, { width, height }, format) {
    const bottom = height - MARGIN.bottom;
    el("line", { class: "axis", x1: MARGIN.left, x2: width - MARGIN.right, y1: bottom, y2: bottom }, svg);
    el("line", { class: "axis", x1: MARGIN.left, x2: MARGIN.left, y1: MARGIN.top, y2: bottom }, svg);
    for (const tick of xTicks) text(svg, x(tick.value ?? tick), bottom + 12, tick.label ?? format(tick), { "text-anchor": "middle" });
    for (const tick of yTicks) text(svg, MARGIN.left - 4, y(tick) + 3, format(tick), { "text-anchor": "end" });
  }

  function formatTick(v) {
    return Math.abs(v) >= 1000 ? v.toExponential(0) : String(+v.toFixed(3));
  }

  // series: [{points: [[x, y], ...], color, width, label}]
  function line(container, options) {
    const { width = 300, height = 200, series, diagonal = false, marks = [] } = options;
    const xs = series.flatMap((s) => s.points.map((p) => p[0]));
    const ys = series.flatMap((s) => s.points.map((p) => p[1]));
    const xDomain = options.xDomain || extent(xs);
    const yDomain = options.yDomain || extent(ys);
    const svg = frame(container, options);
    const x = scale(xDomain, [MARGIN.left, width - MARGIN.right]);
    const y = scale(yDomain, [height - MARGIN.bottom, MARGIN.top]);
    for (const mark of marks) {
      el("line", { class: "epoch-tick", x1: x(mark), x2: x(mark), y1: MARGIN.top, y2: height - MARGIN.bottom }, svg);
    }
    if (diagonal) el("line", { class: "diagonal", x1: x(xDomain[0]), y1: y(yDomain[0]), x2: x(xDomain[1]), y2: y(yDomain[1]) }, svg);
    axes(svg, x, y, options.xTicks || niceTicks(xDomain, 4), niceTicks(yDomain, 4), { width, height }, formatTick);
    for (const s of series) {
      const points = s.points.filter((p) => p[1] !== null && Number.isFinite(p[1]));
      const path = el("polyline", {
        points: points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" "),
        fill: "none", stroke: s.color, "stroke-width": s.width || 1.5, "stroke-linejoin": "round",
      }, svg);
      if (s.label) el("title", {}, path).textContent = s.label;
    }
    return svg;
  }

  // stacks: [{counts, color, label}] drawn on top of one another over the bins of `edges`
  function histogram(container, options) {
    const { width = 320, height = 200, edges, stacks } = options;
    const totals = edges.slice(1).map((_, i) => stacks.reduce((sum, s) => sum + s.counts[i], 0));
    const svg = frame(container, options);
    const x = scale([edges[0], edges[edges.length - 1]], [MARGIN.left, width - MARGIN.right]);
    const y = scale([0, Math.max(1, ...totals)], [height - MARGIN.bottom, MARGIN.top]);
    axes(svg, x, y, niceTicks([edges[0], edges[edges.length - 1]], 4), niceTicks([0, Math.max(1, ...totals)], 4), { width, height }, formatTick);
    edges.slice(1).forEach((right, i) => {
      let base = 0;
      for (const s of stacks) {
        const count = s.counts[i];
        if (!count) continue;
        const rect = el("rect", {
          x: x(edges[i]) + 0.5, width: Math.max(0.5, x(right) - x(edges[i]) - 1),
          y: y(base + count), height: y(base) - y(base + count), fill: s.color,
        }, svg);
        el("title", {}, rect).textContent = `${s.label}: ${count}`;
        base += count;
      }
    });
    return svg;
  }

  // series: [{values, color}] over their index, on a shared y domain
  function sparkline(container, { width = 180, height = 52, series, yDomain }) {
    const svg = el("svg", { class: "sparkline", width, height, viewBox: `0 0 ${width} ${height}` }, container);
    const longest = Math.max(2, ...series.map((s) => s.values.length));
    const x = scale([0, longest - 1], [2, width - 2]);
    const y = scale(yDomain || extent(series.flatMap((s) => s.values)), [height - 2, 2]);
    for (const s of series) {
      const points = s.values.map((v, i) => [i, v]).filter(([, v]) => v !== null && Number.isFinite(v));
      if (points.length === 1) points.push([points[0][0] + 0.01, points[0][1]]);
      el("polyline", {
        points: points.map(([i, v]) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" "),
        fill: "none", stroke: s.color, "stroke-width": 1.6, "stroke-linejoin": "round",
      }, svg);
    }
    return svg;
  }

  return { line, histogram, sparkline };
})();
