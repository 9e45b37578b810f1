// The kernel dashboard. Plain JavaScript, no dependency, no build step.
//
// Asks for an operator token once (kept in sessionStorage: this tab only), then reads the snapshot
// every second with fetch() and an Authorization header (an EventSource could not send one, and a
// token in a URL would land in access logs), and updates the tables in place: rows are kept by key
// and only the cells that changed are written. Every value goes in with textContent, never as HTML.
// CPU % comes from the growth of each process's cpuSeconds between two samples. Scheduled tasks are
// read from each plugin's /.scheduler/v1/tasks (every 10 s, and after a trigger) with the same token.
"use strict";

(function () {
  const SNAPSHOT = "dashboard/v1/snapshot"; // relative to /.kernel/dashboard
  const TOKEN_KEY = "kernel.dashboard.token";
  const POLL_MS = 1000;
  const TASKS_EVERY = 10; // snapshots between two reads of the task lists
  const ERRORS_SHOWN = 15;

  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(TOKEN_KEY);
  let timer = null;
  let polls = 0;
  let last = null; // the last snapshot shown
  const cpu = new Map(); // pid -> {seconds, at, percent}
  const tasks = new Map(); // plugin id -> {tasks: [...]} | {error: "..."}
  const noScheduler = new Map(); // plugin id -> its workers when it answered 404: asked again once they change
  const triggered = new Map(); // "plugin/task" -> what the last trigger answered

  // ---------------------------------------------------------------- formatting
  function bytes(n) {
    if (!n) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }
  function ms(v) { return v ? (v < 10 ? v.toFixed(2) : v.toFixed(1)) + " ms" : "–"; }
  function num(v, digits) { return v ? v.toFixed(digits) : "0"; }
  function duration(s) {
    if (s == null || s < 0) return "–";
    s = Math.floor(s);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }
  function time(t) {
    if (t == null) return "–";
    const d = typeof t === "number" ? new Date(t * 1000) : new Date(t);
    return isNaN(d) ? String(t) : d.toLocaleTimeString();
  }
  function stateClass(state) { return "state-" + String(state || "").split(":")[0]; }
  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }
  function percent(p) { return p == null ? "–" : p.toFixed(1) + " %"; }

  // ---------------------------------------------------------------- rows kept by key
  // A row spec: {key, className, data: {name: value}, cells: [text | {text, className, title, button}]}.
  function syncRows(tbody, specs) {
    const old = new Map();
    for (const tr of Array.from(tbody.rows)) old.set(tr.dataset.key, tr);
    let prev = null;
    for (const spec of specs) {
      let tr = old.get(spec.key);
      if (tr) old.delete(spec.key);
      else { tr = document.createElement("tr"); tr.dataset.key = spec.key; }
      updateRow(tr, spec);
      const want = prev ? prev.nextSibling : tbody.firstChild;
      if (want !== tr) tbody.insertBefore(tr, want);
      prev = tr;
    }
    for (const tr of old.values()) tr.remove();
  }
  function updateRow(tr, spec) {
    const cls = spec.className || "";
    if (tr.className !== cls) tr.className = cls;
    for (const [name, value] of Object.entries(spec.data || {})) {
      if (tr.dataset[name] !== String(value)) tr.dataset[name] = String(value);
    }
    while (tr.cells.length < spec.cells.length) tr.insertCell();
    while (tr.cells.length > spec.cells.length) tr.deleteCell(-1);
    spec.cells.forEach((cell, i) => updateCell(tr.cells[i], cell !== null && typeof cell === "object" ? cell : { text: cell }));
  }
  function updateCell(td, cell) {
    const cls = cell.className || "";
    if (td.className !== cls) td.className = cls;
    const title = cell.title || "";
    if (td.title !== title) td.title = title;
    if (cell.button) {
      let button = td.firstElementChild;
      if (!button || button.tagName !== "BUTTON") {
        td.textContent = "";
        button = document.createElement("button");
        button.type = "button";
        td.appendChild(button);
      }
      if (button.textContent !== cell.button.label) button.textContent = cell.button.label;
      button.disabled = Boolean(cell.button.disabled);
      for (const [name, value] of Object.entries(cell.button.data)) button.dataset[name] = value;
      return;
    }
    const text = cell.text == null ? "" : String(cell.text);
    if (td.firstElementChild || td.textContent !== text) td.textContent = text;
  }

  // ---------------------------------------------------------------- CPU % from cpuSeconds deltas
  function cpuPercent(proc, at) {
    if (!proc.pid || at == null) return null;
    const seen = cpu.get(proc.pid);
    if (!seen) { cpu.set(proc.pid, { seconds: proc.cpuSeconds, at: at, percent: null }); return null; }
    if (at > seen.at) {
      seen.percent = Math.max(0, ((proc.cpuSeconds - seen.seconds) / (at - seen.at)) * 100);
      seen.seconds = proc.cpuSeconds;
      seen.at = at;
    }
    return seen.percent;
  }
  function forgetGonePids(snapshot) {
    const alive = new Set();
    for (const p of snapshot.plugins) for (const w of p.workers) alive.add(w.pid);
    for (const g of snapshot.gateways) alive.add(g.pid);
    if (snapshot.supervisor) alive.add(snapshot.supervisor.pid);
    for (const pid of Array.from(cpu.keys())) if (!alive.has(pid)) cpu.delete(pid);
  }

  // ---------------------------------------------------------------- rendering
  function sum(items, key) { return items.reduce((total, item) => total + (item[key] || 0), 0); }

  function render(s) {
    const at = s.sampledAt;
    const workers = s.plugins.reduce((n, p) => n + p.workers.length, 0);
    $("summary").textContent = [
      "v" + s.kernel.version,
      "up " + duration(s.kernel.uptimeSeconds),
      plural(s.plugins.length, "plugin"),
      plural(workers, "worker"),
      plural(s.gateways.length, "gateway"),
    ].join(" · ");

    const rows = [];
    for (const p of s.plugins) {
      const percents = p.workers.map((w) => cpuPercent(w, at));
      const known = percents.filter((v) => v != null);
      rows.push({
        key: "p:" + p.id,
        className: "plugin",
        data: { plugin: p.id },
        cells: [
          { text: p.id, className: "first" },
          plural(p.workers.length, "worker"),
          "",
          { text: p.state, className: stateClass(p.state), title: p.reason || "" },
          { text: bytes(sum(p.workers, "rssBytes")), className: "num" },
          { text: known.length ? percent(known.reduce((a, b) => a + b, 0)) : "–", className: "num" },
          { text: sum(p.workers, "inFlight"), className: "num" },
          { text: num(sum(p.workers, "rps"), 1), className: "num" },
          { text: "", className: "num" },
          { text: "", className: "num" },
          { text: sum(p.workers, "served"), className: "num" },
          { text: p.restarts, className: "num restarts", title: "restarted after dying: " + p.restarts + "; replaced on purpose: " + p.recycles },
          { text: "", className: "num" },
        ],
      });
      p.workers.forEach((w, i) => {
        rows.push({
          key: "w:" + w.id,
          className: "worker",
          data: { plugin: p.id, worker: w.id, pid: w.pid == null ? "" : w.pid },
          cells: [
            "",
            w.id,
            { text: w.pid == null ? "–" : w.pid, className: "pid" },
            { text: w.state, className: stateClass(w.state) },
            { text: bytes(w.rssBytes), className: "num" },
            { text: percent(percents[i]), className: "num" },
            { text: w.inFlight, className: "num" },
            { text: num(w.rps, 1), className: "num" },
            { text: ms(w.p50Ms), className: "num" },
            { text: ms(w.p99Ms), className: "num" },
            { text: w.served, className: "num" },
            { text: "", className: "num" },
            { text: w.startedAt ? duration(s.now - w.startedAt) : "–", className: "num" },
          ],
        });
      });
    }
    syncRows($("plugins").tBodies[0], rows);

    $("failed-section").hidden = s.failed.length === 0;
    syncRows($("failed").tBodies[0], s.failed.map((f) => ({
      key: f.id,
      data: { plugin: f.id },
      cells: [{ text: f.id, className: "state-failed" }, { text: f.reason, className: "wrap" }],
    })));

    // what keeps each plugin apart: who its workers run as, their cgroup, config and logins (names only)
    syncRows($("isolation").tBodies[0], s.plugins.filter((p) => p.isolation && p.isolation.runsAs).map((p) => ({
      key: p.id,
      data: { plugin: p.id },
      cells: [p.id].concat(["runsAs", "cgroup", "config", "database", "cache"].map(
        (k) => ({ text: p.isolation[k] || "–", className: "wrap" }))),
    })));

    const procs = (s.supervisor ? [{ name: "supervisor", p: s.supervisor }] : [])
      .concat(s.gateways.map((g) => ({ name: g.id, p: g })));
    syncRows($("processes").tBodies[0], procs.map(({ name, p }) => ({
      key: name,
      data: { process: name, pid: p.pid },
      cells: [
        name,
        { text: p.pid, className: "pid" },
        { text: p.state, className: stateClass(p.state) },
        { text: bytes(p.rssBytes), className: "num" },
        { text: percent(cpuPercent(p, at)), className: "num" },
        { text: name === "supervisor" ? "–" : ms(p.heartbeatRttMs), className: "num" },
        { text: p.startedAt ? duration(s.now - p.startedAt) : "–", className: "num" },
      ],
    })));

    $("errors-empty").hidden = s.recentErrors.length > 0;
    $("errors-more").textContent = s.recentErrors.length > ERRORS_SHOWN
      ? "and " + (s.recentErrors.length - ERRORS_SHOWN) + " earlier" : "";
    syncRows($("errors").tBodies[0], s.recentErrors.slice(0, ERRORS_SHOWN).map((e, i) => ({
      key: (e.requestId || "") + ":" + e.at + ":" + i,
      cells: [
        time(e.at),
        { text: e.status, className: "state-error" },
        e.method,
        { text: e.path, className: "wrap" },
        e.pluginId || "–",
        e.requestId || "–",
      ],
    })));
    forgetGonePids(s);
    renderTasks();
    if (window.kernelCharts) window.kernelCharts.update(s); // charts.js: the trends per plugin
  }

  function renderTasks() {
    const rows = [];
    const ids = last ? last.plugins.map((p) => p.id) : [];
    for (const id of ids) {
      const entry = tasks.get(id);
      if (!entry) continue;
      if (entry.error) {
        rows.push({ key: "e:" + id, data: { plugin: id }, cells: [id, { text: entry.error, className: "wrap state-error" }] });
        continue;
      }
      for (const t of entry.tasks) {
        const key = id + "/" + t.taskId;
        const state = t.taskState || {};
        const answer = triggered.get(key);
        rows.push({
          key: "t:" + key,
          data: { plugin: id, task: t.taskId },
          cells: [
            id,
            t.taskId,
            t.scope,
            String((t.settings || {}).frequency),
            { text: state.status, className: stateClass(state.status) },
            time(state.nextRunAt),
            time(state.lastRunEndedAt),
            { text: answer || state.lastRunError || "", className: "wrap" + (answer ? "" : " state-error") },
            { button: { label: "Trigger", disabled: state.status === "running", data: { plugin: id, task: t.taskId } } },
          ],
        });
      }
    }
    $("tasks-empty").hidden = rows.length > 0;
    syncRows($("tasks").tBodies[0], rows);
  }

  // ---------------------------------------------------------------- talking to the kernel
  function headers() { return { Authorization: "Bearer " + token, Accept: "application/json" }; }

  async function errorMessage(resp) {
    try {
      const body = await resp.json();
      if (body && body.error && body.error.message) return body.error.message;
    } catch (e) { /* not the error shape */ }
    return "HTTP " + resp.status;
  }

  function status(text, isError) {
    $("status").textContent = text;
    $("status").classList.toggle("error", Boolean(isError));
    $("main").classList.toggle("stale", Boolean(isError));
  }

  function askForToken(message) {
    if (timer) { clearTimeout(timer); timer = null; }
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    $("main").hidden = true;
    $("forget").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
    status("");
    $("token").focus();
  }

  async function poll() {
    timer = null;
    try {
      const resp = await fetch(SNAPSHOT, { headers: headers(), cache: "no-store" });
      if (resp.status === 401 || resp.status === 403) {
        askForToken(await errorMessage(resp));
        return; // no more polls until a token is given
      }
      if (!resp.ok) {
        status("snapshot failed: " + (await errorMessage(resp)) + "; retrying…", true);
        return;
      }
      last = await resp.json();
      $("login").hidden = true;
      $("main").hidden = false;
      $("forget").hidden = false;
      render(last);
      status("updated " + time(last.now) + (last.sampledAt == null ? " (no figures yet)" : ""));
      if (polls % TASKS_EVERY === 0) refreshTasks();
      polls += 1;
    } catch (e) {
      status(e instanceof TypeError ? "kernel unreachable, retrying…" : "snapshot not shown: " + e + "; retrying…", true);
    } finally {
      schedule();
    }
  }

  function schedule() { if (token && !timer) timer = setTimeout(poll, POLL_MS); }

  function taskUrl(plugin, rest) {
    return last.kernel.mount + "/" + encodeURIComponent(plugin) + "/.scheduler/v1/tasks" + (rest || "");
  }

  function workersOf(plugin) {
    const p = last.plugins.find((x) => x.id === plugin);
    return p ? p.workers.map((w) => w.id).join(" ") : "";
  }

  async function readTasks(plugin) {
    try {
      const resp = await fetch(taskUrl(plugin), { headers: headers(), cache: "no-store" });
      if (resp.status === 404) { // no scheduler in this plugin (until its workers change)
        tasks.delete(plugin);
        noScheduler.set(plugin, workersOf(plugin));
      } else if (resp.ok) tasks.set(plugin, { tasks: (await resp.json()).tasks || [] });
      else tasks.set(plugin, { error: "tasks: " + (await errorMessage(resp)) });
    } catch (e) {
      tasks.set(plugin, { error: "tasks: kernel unreachable" });
    }
  }

  async function refreshTasks() {
    if (!last) return;
    const live = last.plugins.filter((p) => p.state !== "failed").map((p) => p.id);
    for (const id of Array.from(tasks.keys())) if (!live.includes(id)) tasks.delete(id);
    const asked = live.filter((id) => !noScheduler.has(id) || noScheduler.get(id) !== workersOf(id));
    await Promise.all(asked.map(readTasks));
    renderTasks();
  }

  async function trigger(button) {
    const plugin = button.dataset.plugin;
    const task = button.dataset.task;
    const key = plugin + "/" + task;
    button.disabled = true;
    try {
      const resp = await fetch(taskUrl(plugin, "/" + encodeURIComponent(task) + "/trigger"), {
        method: "POST",
        headers: headers(),
      });
      triggered.set(key, resp.ok ? "triggered at " + new Date().toLocaleTimeString() : await errorMessage(resp));
    } catch (e) {
      triggered.set(key, "kernel unreachable");
    }
    await readTasks(plugin);
    renderTasks();
  }

  // ---------------------------------------------------------------- wiring
  document.addEventListener("DOMContentLoaded", () => {
    $("login").addEventListener("submit", (event) => {
      event.preventDefault();
      token = $("token").value.trim();
      $("token").value = "";
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $("login-error").textContent = "";
      status("connecting…");
      poll();
    });
    $("forget").addEventListener("click", () => askForToken(""));
    $("tasks-refresh").addEventListener("click", () => { noScheduler.clear(); refreshTasks(); });
    $("tasks").addEventListener("click", (event) => {
      const button = event.target.closest("button[data-task]");
      if (button && !button.disabled) trigger(button);
    });
    if (token) poll();
    else askForToken("");
  });
})();
