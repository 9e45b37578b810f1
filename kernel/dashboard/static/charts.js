// The dashboard's trends: per plugin, small time series of req/s, p99, in flight and RSS over the
// last minutes, drawn on <canvas> with the 2D context. No dependency, nothing inline (the kernel's
// CSP allows only its own files): dashboard.js hands each snapshot to kernelCharts.update().
//
// Each plugin's figures are summed over its workers (req/s, in flight, RSS) or their worst (p99),
// one point per snapshot, the last HISTORY kept. Each canvas says what it shows in data-* attributes
// (points, last value) and in its aria-label, for people and tests that cannot look at pixels.
"use strict";

(function () {
  const HISTORY = 300; // points kept per series: five minutes at one snapshot a second
  const WIDTH = 220;
  const HEIGHT = 56;
  const SERIES = [
    { key: "rps", label: "req/s", of: (ws) => ws.reduce((t, w) => t + (w.rps || 0), 0), format: (v) => v.toFixed(1) },
    { key: "p99", label: "p99", of: (ws) => ws.reduce((m, w) => Math.max(m, w.p99Ms || 0), 0), format: (v) => v.toFixed(1) + " ms" },
    { key: "inflight", label: "in flight", of: (ws) => ws.reduce((t, w) => t + (w.inFlight || 0), 0), format: (v) => String(v) },
    { key: "rss", label: "RSS", of: (ws) => ws.reduce((t, w) => t + (w.rssBytes || 0), 0), format: (v) => (v / 1048576).toFixed(1) + " MiB" },
  ];
  const history = new Map(); // plugin id -> {at: [...], rps: [...], p99: [...], ...}

  function color(name, fallback) {
    const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
    return v || fallback;
  }

  function record(s) {
    const at = s.sampledAt == null ? s.now : s.sampledAt;
    const seen = new Set();
    for (const p of s.plugins) {
      seen.add(p.id);
      let h = history.get(p.id);
      if (!h) { h = { at: [] }; for (const f of SERIES) h[f.key] = []; history.set(p.id, h); }
      if (h.at.length && h.at[h.at.length - 1] === at) continue; // the same sample again
      h.at.push(at);
      for (const f of SERIES) h[f.key].push(f.of(p.workers));
      if (h.at.length > HISTORY) { h.at.shift(); for (const f of SERIES) h[f.key].shift(); }
    }
    for (const id of Array.from(history.keys())) if (!seen.has(id)) history.delete(id);
  }

  function figure(plugin, f) {
    const fig = document.createElement("figure");
    fig.className = "chart";
    const cap = document.createElement("figcaption");
    const canvas = document.createElement("canvas");
    const ratio = window.devicePixelRatio || 1;
    canvas.width = WIDTH * ratio;
    canvas.height = HEIGHT * ratio;
    canvas.dataset.plugin = plugin;
    canvas.dataset.series = f.key;
    canvas.setAttribute("role", "img");
    fig.append(cap, canvas);
    return fig;
  }

  function ensure(container, id) {
    let section = container.querySelector('section.trend[data-plugin="' + CSS.escape(id) + '"]');
    if (section) return section;
    section = document.createElement("section");
    section.className = "trend";
    section.dataset.plugin = id;
    const title = document.createElement("h3");
    title.textContent = id;
    section.append(title);
    for (const f of SERIES) section.append(figure(id, f));
    container.append(section);
    return section;
  }

  function draw(canvas, at, values, f) {
    const ctx = canvas.getContext("2d");
    const w = canvas.width, h = canvas.height, pad = 2 * (window.devicePixelRatio || 1);
    ctx.clearRect(0, 0, w, h);
    ctx.strokeStyle = color("--line", "#e3e3e0");
    ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(0, h - 0.5); ctx.lineTo(w, h - 0.5); ctx.stroke(); // the zero line
    const n = values.length;
    if (n < 2) return;
    const t0 = at[0], span = Math.max(at[n - 1] - t0, 1e-9);
    const top = Math.max(...values) || 1;
    const x = (i) => pad + ((at[i] - t0) / span) * (w - 2 * pad);
    const y = (v) => h - pad - (v / top) * (h - 2 * pad);
    ctx.beginPath();
    ctx.moveTo(x(0), y(values[0]));
    for (let i = 1; i < n; i++) ctx.lineTo(x(i), y(values[i]));
    ctx.strokeStyle = color("--accent", "#0b5cad");
    ctx.lineWidth = 1.5 * (window.devicePixelRatio || 1);
    ctx.stroke();
    ctx.lineTo(x(n - 1), h); ctx.lineTo(x(0), h); ctx.closePath();
    ctx.globalAlpha = 0.15; ctx.fillStyle = ctx.strokeStyle; ctx.fill(); ctx.globalAlpha = 1;
  }

  function render() {
    const container = document.getElementById("trends");
    if (!container) return;
    for (const section of Array.from(container.querySelectorAll("section.trend"))) {
      if (!history.has(section.dataset.plugin)) section.remove();
    }
    for (const [id, h] of history) {
      const section = ensure(container, id);
      const minutes = h.at.length > 1 ? (h.at[h.at.length - 1] - h.at[0]) / 60 : 0;
      for (const f of SERIES) {
        const canvas = section.querySelector('canvas[data-series="' + f.key + '"]');
        const values = h[f.key];
        const last = values.length ? values[values.length - 1] : 0;
        const peak = values.length ? Math.max(...values) : 0;
        canvas.dataset.points = String(values.length);
        canvas.dataset.last = String(last);
        const text = f.label + " " + f.format(last) + " (peak " + f.format(peak) + ")";
        canvas.setAttribute("aria-label", id + " " + text + " over " + minutes.toFixed(1) + " min");
        const cap = canvas.previousElementSibling;
        if (cap.textContent !== text) cap.textContent = text;
        draw(canvas, h.at, values, f);
      }
    }
  }

  window.kernelCharts = {
    update(snapshot) { record(snapshot); render(); },
  };
})();
