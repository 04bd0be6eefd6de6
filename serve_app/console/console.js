// Inventory operator console: plain ES2020, no dependencies.
//
// Every value that comes from the API reaches the page through textContent or attributes set
// with createElement, never through innerHTML.
"use strict";

(() => {
  const KEY_STORAGE = "inventory-api-key";
  const FAST_INTERVAL_MS = 2000; // shards + readiness
  const SLOW_INTERVAL_MS = 5000; // alerts + recent events
  const ERROR_INTERVAL_MS = 10000; // after a failed poll
  const REQUEST_TIMEOUT_MS = 8000;
  const EVENTS_LIMIT = 50;
  const CHART_WINDOW_MS = 5 * 60 * 1000;
  const CHART_POINTS = 300; // ring buffer capacity per series
  const CHART_GAP_MS = 15000; // a longer gap between points breaks the line
  const DASH = "\u2013"; // "–"
  const PALETTE = [
    "#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed",
    "#0891b2", "#db2777", "#65a30d", "#475569", "#b45309",
  ];
  const TOTAL_COLOR = "#111827";

  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- DOM helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [name, value] of Object.entries(attrs)) {
        if (value === null || value === undefined || value === false) continue;
        if (name === "className") node.className = value;
        else if (name === "dataset") Object.assign(node.dataset, value);
        else node.setAttribute(name, value === true ? "" : String(value));
      }
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const isNum = (value) => typeof value === "number" && Number.isFinite(value);
  const show = (value) => (value === null || value === undefined ? DASH : String(value));

  function formatRate(value) {
    if (!isNum(value)) return DASH;
    if (value >= 100) return String(Math.round(value));
    if (value >= 10) return value.toFixed(1);
    return value.toFixed(2);
  }

  function formatCompact(value) {
    const abs = Math.abs(value);
    if (abs >= 1e9) return `${+(value / 1e9).toFixed(1)}G`;
    if (abs >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
    if (abs >= 1e3) return `${+(value / 1e3).toFixed(1)}k`;
    if (abs > 0 && abs < 1) return String(+value.toFixed(2));
    return String(+value.toFixed(1));
  }

  const pad2 = (n) => String(n).padStart(2, "0");

  function clockTime(date) {
    return `${pad2(date.getHours())}:${pad2(date.getMinutes())}:${pad2(date.getSeconds())}`;
  }

  function eventTime(text) {
    if (typeof text !== "string") return DASH;
    const date = new Date(text);
    if (Number.isNaN(date.getTime())) return text;
    const ms = String(date.getMilliseconds()).padStart(3, "0");
    return `${clockTime(date)}.${ms}`;
  }

  function signed(value) {
    if (!isNum(value)) return "";
    if (value > 0) return `+${value}`;
    if (value < 0) return `\u2212${-value}`;
    return "0";
  }

  // ---------------------------------------------------------------- API key

  function getKey() {
    try {
      return sessionStorage.getItem(KEY_STORAGE) || null;
    } catch (err) {
      return null;
    }
  }

  function storeKey(key) {
    try {
      sessionStorage.setItem(KEY_STORAGE, key);
    } catch (err) {
      // Storage refused (privacy mode): nothing else to do, the form will come back.
    }
  }

  function dropKey() {
    try {
      sessionStorage.removeItem(KEY_STORAGE);
    } catch (err) {
      // ignore
    }
  }

  // `#key=...` in the address stores the key and is removed from the address at once.
  // True if the address held a key.
  function takeKeyFromFragment() {
    const hash = window.location.hash;
    if (!hash || hash.length < 2) return false;
    const parts = hash.slice(1).split("&");
    const kept = [];
    let found = null;
    for (const part of parts) {
      if (part.startsWith("key=")) {
        try {
          found = decodeURIComponent(part.slice(4));
        } catch (err) {
          found = part.slice(4);
        }
      } else if (part) {
        kept.push(part);
      }
    }
    if (found === null) return false;
    if (found) storeKey(found);
    const rest = kept.length ? `#${kept.join("&")}` : "";
    const url = `${window.location.pathname}${window.location.search}${rest}`;
    try {
      window.history.replaceState(window.history.state, "", url);
    } catch (err) {
      window.location.hash = rest;
    }
    return Boolean(found);
  }

  function showKeyForm(message) {
    $("dashboard").hidden = true;
    $("auth").hidden = false;
    $("api-key-forget").hidden = true;
    const note = $("api-key-message");
    note.textContent = message || "";
    note.hidden = !message;
    clearError("shards");
    clearError("alerts");
    clearError("events");
    $("api-key").value = "";
    $("api-key").focus();
  }

  function showDashboard() {
    $("auth").hidden = true;
    $("api-key-message").hidden = true;
    $("dashboard").hidden = false;
    $("api-key-forget").hidden = false;
    drawCharts();
  }

  function forgetKey(message) {
    dropKey();
    resetData();
    showKeyForm(message);
  }

  // ---------------------------------------------------------------- HTTP

  class ApiError extends Error {
    constructor(status, title, detail) {
      super(detail ? `${title}: ${detail}` : title);
      this.status = status;
      this.title = title;
      this.detail = detail;
    }

    describe() {
      const head = this.status ? `${this.status} ${this.title}` : this.title;
      return this.detail ? `${head} \u2014 ${this.detail}` : head;
    }
  }

  // The key was refused (or is missing): the key form is shown; not a poll failure.
  class AuthError extends Error {}

  async function api(path, options) {
    const { auth = true, acceptStatuses = [] } = options || {};
    const headers = { Accept: "application/json, application/problem+json" };
    let key = null;
    if (auth) {
      key = getKey();
      if (!key) throw new AuthError("no API key");
      headers.Authorization = `Bearer ${key}`;
    }
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REQUEST_TIMEOUT_MS);
    let response;
    let text;
    try {
      response = await fetch(path, {
        headers,
        cache: "no-store",
        credentials: "same-origin",
        signal: controller.signal,
      });
      text = await response.text();
    } catch (err) {
      if (err && err.name === "AbortError") {
        throw new ApiError(0, "Timed out", `no answer within ${REQUEST_TIMEOUT_MS / 1000} s`);
      }
      throw new ApiError(0, "Network error", "the server could not be reached");
    } finally {
      clearTimeout(timer);
    }
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (err) {
      body = null;
    }
    if (response.ok || acceptStatuses.includes(response.status)) {
      if (body === null || typeof body !== "object") {
        throw new ApiError(response.status, "Unexpected answer", "the body is not JSON");
      }
      return body;
    }
    const problem = body && typeof body === "object" ? body : {};
    const title = typeof problem.title === "string" && problem.title
      ? problem.title
      : response.statusText || "Error";
    const detail = typeof problem.detail === "string" ? problem.detail : "";
    if (auth && (response.status === 401 || response.status === 403)) {
      // A late answer to an older key must not throw away a key saved meanwhile.
      if (getKey() === key) {
        const why = detail ? `${title} \u2014 ${detail}` : title;
        forgetKey(`The server refused the key (${response.status} ${why}). Enter another key.`);
      }
      throw new AuthError(title);
    }
    throw new ApiError(response.status, title, detail);
  }

  // ---------------------------------------------------------------- errors and freshness

  const errors = new Map();

  function describeError(err) {
    if (err instanceof ApiError) return err.describe();
    return err && err.message ? err.message : String(err);
  }

  function setError(source, label, err) {
    errors.set(source, `${label}: ${describeError(err)}`);
    renderErrors();
  }

  function clearError(source) {
    if (errors.delete(source)) renderErrors();
  }

  function renderErrors() {
    const banner = $("error");
    banner.replaceChildren();
    if (errors.size === 0) {
      banner.hidden = true;
      return;
    }
    banner.append(el("strong", null, "Polling failed. "));
    const list = el("ul");
    for (const message of errors.values()) list.append(el("li", null, message));
    banner.append(list, el("span", { className: "muted" },
      `Retrying every ${ERROR_INTERVAL_MS / 1000} s.`));
    banner.hidden = false;
  }

  function markUpdated() {
    const now = new Date();
    const node = $("last-updated");
    node.textContent = `Last updated ${clockTime(now)}`;
    node.title = now.toISOString();
  }

  // ---------------------------------------------------------------- polling

  class Poller {
    constructor(interval, task) {
      this.interval = interval;
      this.task = task;
      this.active = false;
      this.running = false;
      this.again = false;
      this.timer = null;
    }

    start() {
      this.active = true;
      this.now();
    }

    stop() {
      this.active = false;
      this.again = false;
      if (this.timer !== null) clearTimeout(this.timer);
      this.timer = null;
    }

    // Poll as soon as possible, never two polls at once.
    now() {
      if (!this.active) return;
      if (this.running) {
        this.again = true;
        return;
      }
      this.schedule(0);
    }

    schedule(delay) {
      if (this.timer !== null) clearTimeout(this.timer);
      this.timer = setTimeout(() => this.run(), delay);
    }

    async run() {
      this.timer = null;
      if (!this.active || this.running) return;
      this.running = true;
      let delay = this.interval;
      try {
        const ok = await this.task();
        if (ok === false) delay = ERROR_INTERVAL_MS;
      } catch (err) {
        delay = ERROR_INTERVAL_MS;
      } finally {
        this.running = false;
      }
      if (!this.active) return;
      if (this.again) {
        this.again = false;
        delay = 0;
      }
      this.schedule(delay);
    }
  }

  // Runs every task's request at once; returns false if any failed (the poller backs off).
  async function settle(jobs) {
    const results = await Promise.allSettled(jobs.map((job) => job()));
    return results.every((result) => result.status === "fulfilled");
  }

  async function pollReadiness() {
    try {
      const body = await api("/readyz", { auth: false, acceptStatuses: [503] });
      renderReadiness(body);
      clearError("readyz");
      markUpdated();
    } catch (err) {
      renderReadiness(null, err);
      setError("readyz", "Readiness", err);
      throw err;
    }
  }

  // A poll of one API route that needs the key: render its answer, or show why it failed.
  function keyedPoll(name, label, path, render) {
    return async function poll() {
      if (!getKey()) return;
      try {
        render(await api(path));
        clearError(name);
        markUpdated();
      } catch (err) {
        if (err instanceof AuthError) return;
        setError(name, label, err);
        throw err;
      }
    };
  }

  const pollShards = keyedPoll("shards", "Shards", "/v1/shards", renderShards);
  const pollAlerts = keyedPoll("alerts", "Low stock", "/v1/alerts", renderAlerts);
  const pollEvents = keyedPoll(
    "events",
    "Recent events",
    `/v1/events/recent?limit=${EVENTS_LIMIT}`,
    renderEvents,
  );

  const fastPoller = new Poller(FAST_INTERVAL_MS, () => settle([pollReadiness, pollShards]));
  const slowPoller = new Poller(SLOW_INTERVAL_MS, () => settle([pollAlerts, pollEvents]));

  function startPolling() {
    if (document.hidden) return;
    fastPoller.start();
    slowPoller.start();
  }

  function stopPolling() {
    fastPoller.stop();
    slowPoller.stop();
  }

  // ---------------------------------------------------------------- readiness

  function renderReadiness(body, err) {
    const badge = $("readiness");
    if (!body) {
      badge.textContent = "not ready";
      badge.className = "badge badge-unknown";
      badge.title = `Readiness unknown: ${describeError(err)}`;
      return;
    }
    const ready = body.ready === true;
    badge.textContent = ready ? "ready" : "not ready";
    badge.className = `badge ${ready ? "badge-ready" : "badge-not-ready"}`;
    const shards = Array.isArray(body.shards) ? body.shards : [];
    const waiting = shards.filter((shard) => shard && shard.state !== "ready");
    badge.title = ready
      ? `All ${shards.length} shards ready`
      : waiting.map((shard) => `shard ${shard.shard}: ${shard.state}`
        + (shard.detail ? ` (${shard.detail})` : "")).join("\n") || "Not ready";
  }

  // ---------------------------------------------------------------- ring buffers and series

  class Ring {
    constructor(capacity) {
      this.capacity = capacity;
      this.items = new Array(capacity);
      this.start = 0;
      this.size = 0;
    }

    push(item) {
      if (this.size < this.capacity) {
        this.items[(this.start + this.size) % this.capacity] = item;
        this.size += 1;
      } else {
        this.items[this.start] = item;
        this.start = (this.start + 1) % this.capacity;
      }
    }

    last() {
      return this.size ? this.items[(this.start + this.size - 1) % this.capacity] : undefined;
    }

    forEach(fn) {
      for (let i = 0; i < this.size; i += 1) fn(this.items[(this.start + i) % this.capacity]);
    }

    clear() {
      this.items = new Array(this.capacity);
      this.start = 0;
      this.size = 0;
    }
  }

  // shard -> { ops: Ring, queue: Ring }; plus the total ops line.
  const series = new Map();
  const totalOps = new Ring(CHART_POINTS);
  // shard -> { commands, pid, at } of the previous poll, for ops/s.
  const previous = new Map();

  function seriesOf(shard) {
    let entry = series.get(shard);
    if (!entry) {
      entry = { ops: new Ring(CHART_POINTS), queue: new Ring(CHART_POINTS) };
      series.set(shard, entry);
    }
    return entry;
  }

  function colorOf(shard) {
    const index = isNum(shard) ? Math.abs(Math.trunc(shard)) : 0;
    return PALETTE[index % PALETTE.length];
  }

  function opsRate(entry, now) {
    const commands = entry.commands;
    const before = previous.get(entry.shard);
    if (!isNum(commands)) {
      previous.delete(entry.shard);
      return null;
    }
    previous.set(entry.shard, { commands, pid: entry.pid, at: now });
    if (!before) return null;
    const seconds = (now - before.at) / 1000;
    // A restarted shard counts from zero again: no rate across the restart.
    if (seconds <= 0 || commands < before.commands || before.pid !== entry.pid) return null;
    return (commands - before.commands) / seconds;
  }

  // ---------------------------------------------------------------- shards

  function renderShards(body) {
    const now = performance.now();
    const wall = Date.now();
    const shards = Array.isArray(body.shards) ? body.shards.slice() : [];
    shards.sort((a, b) => (a.shard ?? 0) - (b.shard ?? 0));
    const tbody = $("shards").tBodies[0];
    const rows = [];
    let total = 0;
    let haveTotal = false;
    let ready = 0;
    for (const entry of shards) {
      const rate = opsRate(entry, now);
      if (isNum(rate)) {
        total += rate;
        haveTotal = true;
      }
      if (entry.state === "ready") ready += 1;
      const lines = seriesOf(entry.shard);
      lines.ops.push({ t: wall, v: isNum(rate) ? rate : null });
      lines.queue.push({ t: wall, v: isNum(entry.queue_depth) ? entry.queue_depth : null });
      rows.push(shardRow(entry, rate));
    }
    if (shards.length === 0) {
      rows.push(el("tr", null, el("td", { colspan: 7, className: "empty" }, "No shards.")));
    }
    tbody.replaceChildren(...rows);
    totalOps.push({ t: wall, v: haveTotal ? total : null });
    const summary = [`${ready} of ${shards.length} ready`];
    if (haveTotal) summary.push(`${formatRate(total)} ops/s`);
    $("shards-summary").textContent = summary.join(" \u00b7 ");
    drawCharts();
  }

  function shardRow(entry, rate) {
    const state = ["ready", "recovering", "unreachable"].includes(entry.state)
      ? entry.state : "unreachable";
    const badge = el("span", { className: `state state-${state}` }, show(entry.state));
    if (entry.detail) badge.title = String(entry.detail);
    const facts = [];
    if (isNum(entry.pid)) facts.push(`pid ${entry.pid}`);
    if (isNum(entry.sku_count)) facts.push(`${entry.sku_count} SKUs`);
    if (isNum(entry.commands)) facts.push(`${entry.commands} commands`);
    if (isNum(entry.batches)) facts.push(`${entry.batches} batches`);
    if (isNum(entry.overloaded)) facts.push(`${entry.overloaded} overloaded`);
    if (isNum(entry.storage_failures)) facts.push(`${entry.storage_failures} storage failures`);
    if (isNum(entry.snapshots_completed)) facts.push(`${entry.snapshots_completed} snapshots`);
    if (isNum(entry.recovery_seconds)) facts.push(`recovered in ${entry.recovery_seconds} s`);
    const row = el("tr", { dataset: { shard: show(entry.shard) }, title: facts.join(", ") || null },
      el("td", null, show(entry.shard)),
      el("td", null, badge),
      el("td", { className: "num" }, show(entry.last_lsn)),
      el("td", { className: "num" }, show(entry.queue_depth)),
      el("td", { className: "num" }, formatRate(rate)),
      el("td", { className: "num" }, show(entry.active_holds)),
      el("td", { className: "num" }, show(entry.level_count)));
    if (state !== "ready") row.classList.add(`row-${state}`);
    return row;
  }

  // ---------------------------------------------------------------- charts

  function niceStep(raw) {
    const exponent = Math.floor(Math.log10(raw));
    const base = 10 ** exponent;
    const fraction = raw / base;
    const nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10;
    return nice * base;
  }

  function yScale(max, integer) {
    let top = max > 0 ? max : 1;
    let step = niceStep(top / 4);
    if (integer && step < 1) step = 1;
    top = Math.max(step, Math.ceil(top / step - 1e-9) * step);
    const ticks = [];
    for (let value = 0; value <= top + step / 2; value += step) ticks.push(value);
    return { top, ticks };
  }

  function drawChart(canvas, lines, options) {
    if (!canvas || canvas.offsetParent === null) return; // hidden: drawn when shown
    const rect = canvas.getBoundingClientRect();
    const width = Math.max(1, rect.width);
    const height = Math.max(1, rect.height);
    const ratio = window.devicePixelRatio || 1;
    const pixelWidth = Math.round(width * ratio);
    const pixelHeight = Math.round(height * ratio);
    if (canvas.width !== pixelWidth || canvas.height !== pixelHeight) {
      canvas.width = pixelWidth;
      canvas.height = pixelHeight;
    }
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);

    const now = Date.now();
    const from = now - CHART_WINDOW_MS;
    let max = 0;
    let points = 0;
    for (const line of lines) {
      line.ring.forEach((point) => {
        if (point.t >= from && isNum(point.v)) {
          max = Math.max(max, point.v);
          points += 1;
        }
      });
    }
    const { top, ticks } = yScale(max, options.integer);
    const font = "11px system-ui, -apple-system, \"Segoe UI\", Roboto, sans-serif";
    ctx.font = font;
    const labelWidth = Math.max(...ticks.map((tick) => ctx.measureText(formatCompact(tick)).width));
    const plot = { left: Math.ceil(labelWidth) + 12, right: width - 10, top: 8, bottom: height - 22 };
    const plotWidth = Math.max(1, plot.right - plot.left);
    const plotHeight = Math.max(1, plot.bottom - plot.top);
    const x = (t) => plot.left + ((t - from) / CHART_WINDOW_MS) * plotWidth;
    const y = (v) => plot.bottom - (v / top) * plotHeight;

    // Grid and y labels.
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (const tick of ticks) {
      const yy = Math.round(y(tick)) + 0.5;
      ctx.strokeStyle = tick === 0 ? "#9ca3af" : "#e5e7eb";
      ctx.beginPath();
      ctx.moveTo(plot.left, yy);
      ctx.lineTo(plot.right, yy);
      ctx.stroke();
      ctx.fillStyle = "#6b7280";
      ctx.fillText(formatCompact(tick), plot.left - 6, yy);
    }
    // y axis and x ticks (one a minute).
    ctx.strokeStyle = "#9ca3af";
    ctx.beginPath();
    ctx.moveTo(plot.left + 0.5, plot.top);
    ctx.lineTo(plot.left + 0.5, plot.bottom);
    ctx.stroke();
    ctx.textBaseline = "top";
    for (let minutes = 5; minutes >= 0; minutes -= 1) {
      const xx = Math.round(x(now - minutes * 60000)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(xx, plot.bottom);
      ctx.lineTo(xx, plot.bottom + 4);
      ctx.stroke();
      ctx.textAlign = minutes === 5 ? "left" : minutes === 0 ? "right" : "center";
      ctx.fillText(minutes === 0 ? "now" : `\u2212${minutes} min`, xx, plot.bottom + 6);
    }

    if (points === 0) {
      ctx.fillStyle = "#9ca3af";
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.font = "13px system-ui, -apple-system, \"Segoe UI\", Roboto, sans-serif";
      ctx.fillText("Waiting for data\u2026", plot.left + plotWidth / 2, plot.top + plotHeight / 2);
      return;
    }

    // Lines, clipped to the plot area.
    ctx.save();
    ctx.beginPath();
    ctx.rect(plot.left, plot.top - 2, plotWidth, plotHeight + 4);
    ctx.clip();
    ctx.lineJoin = "round";
    ctx.lineCap = "round";
    for (const line of lines) {
      ctx.strokeStyle = line.color;
      ctx.lineWidth = line.total ? 2 : 1.75;
      ctx.setLineDash(line.total ? [5, 4] : []);
      ctx.beginPath();
      let previousT = null;
      let drawn = 0;
      let lone = null;
      line.ring.forEach((point) => {
        if (!isNum(point.v) || point.t < from - CHART_GAP_MS) {
          previousT = null;
          return;
        }
        const px = x(point.t);
        const py = y(point.v);
        if (previousT === null || point.t - previousT > CHART_GAP_MS) {
          ctx.moveTo(px, py);
          lone = { px, py };
        } else {
          ctx.lineTo(px, py);
          lone = null;
        }
        previousT = point.t;
        drawn += 1;
      });
      if (drawn) ctx.stroke();
      if (lone && drawn) {
        // A single point (first value after a gap) would not show as a line.
        ctx.setLineDash([]);
        ctx.fillStyle = line.color;
        ctx.beginPath();
        ctx.arc(lone.px, lone.py, 2, 0, Math.PI * 2);
        ctx.fill();
      }
    }
    ctx.restore();
  }

  function renderLegend(list, lines, format) {
    const items = lines.map((line) => {
      const last = line.ring.last();
      const value = last && isNum(last.v) ? format(last.v) : DASH;
      const swatch = el("span", { className: line.total ? "swatch swatch-total" : "swatch" });
      swatch.style.borderColor = line.color;
      return el("li", null, swatch, el("span", null, line.label),
        el("span", { className: "legend-value" }, value));
    });
    list.replaceChildren(...items);
  }

  function chartLines() {
    const shards = [...series.keys()].sort((a, b) => a - b);
    const from = Date.now() - CHART_WINDOW_MS;
    const recent = (ring) => {
      const last = ring.last();
      return last !== undefined && last.t >= from;
    };
    const ops = [];
    const queue = [];
    for (const shard of shards) {
      const entry = series.get(shard);
      const color = colorOf(shard);
      if (recent(entry.ops)) ops.push({ label: `shard ${shard}`, color, ring: entry.ops });
      if (recent(entry.queue)) queue.push({ label: `shard ${shard}`, color, ring: entry.queue });
    }
    if (ops.length > 1 && recent(totalOps)) {
      ops.push({ label: "all shards", color: TOTAL_COLOR, ring: totalOps, total: true });
    }
    return { ops, queue };
  }

  let drawPending = false;

  function drawCharts() {
    if (drawPending) return;
    drawPending = true;
    window.requestAnimationFrame(() => {
      drawPending = false;
      if ($("dashboard").hidden) return;
      const { ops, queue } = chartLines();
      drawChart($("chart-ops"), ops, { integer: false });
      drawChart($("chart-queue"), queue, { integer: true });
      renderLegend($("chart-ops-legend"), ops, (v) => `${formatRate(v)}/s`);
      renderLegend($("chart-queue-legend"), queue, (v) => String(v));
    });
  }

  // ---------------------------------------------------------------- low stock

  function partialNote(node, missing, what) {
    const shards = Array.isArray(missing) ? missing : [];
    if (shards.length === 0) {
      node.hidden = true;
      node.textContent = "";
      return;
    }
    const names = shards.map((shard) => String(shard)).join(", ");
    const noun = shards.length === 1 ? "Shard" : "Shards";
    node.textContent = `${noun} ${names} did not answer: ${what} may be incomplete.`;
    node.hidden = false;
  }

  function skuLink(sku) {
    if (typeof sku !== "string" || sku === "") return show(sku);
    const button = el("button", { type: "button", className: "link", title: `Look up ${sku}` }, sku);
    button.addEventListener("click", () => {
      $("sku-input").value = sku;
      lookUp(sku);
    });
    return button;
  }

  function renderAlerts(body) {
    const alerts = Array.isArray(body.alerts) ? body.alerts : [];
    partialNote($("low-stock-partial"), body.unavailable_shards, "this list");
    const table = $("low-stock-table");
    const rows = alerts.map((alert) => el("tr", null,
      el("td", null, skuLink(alert.sku)),
      el("td", null, show(alert.location)),
      el("td", { className: "num" }, show(alert.available)),
      el("td", { className: "num" }, show(alert.low_stock_below))));
    table.tBodies[0].replaceChildren(...rows);
    table.hidden = alerts.length === 0;
    $("low-stock-empty").hidden = alerts.length !== 0;
    $("low-stock-count").textContent = alerts.length ? `${alerts.length} low` : "";
  }

  // ---------------------------------------------------------------- events

  function levelFigure(level) {
    if (isNum(level)) return level;
    if (level && typeof level === "object") {
      if (isNum(level.available)) return level.available;
      if (isNum(level.on_hand)) return level.on_hand;
    }
    return null;
  }

  function levelText(level) {
    if (isNum(level)) return String(level);
    if (!level || typeof level !== "object") return DASH;
    const parts = [];
    if (isNum(level.on_hand)) parts.push(`on hand ${level.on_hand}`);
    if (isNum(level.reserved)) parts.push(`reserved ${level.reserved}`);
    if (isNum(level.available)) parts.push(`available ${level.available}`);
    return parts.join(", ") || DASH;
  }

  function changeCell(event) {
    const cell = el("td", { className: "change" });
    const delta = signed(event.delta);
    if (delta) {
      const cls = event.delta > 0 ? "delta up" : event.delta < 0 ? "delta down" : "delta";
      cell.append(el("span", { className: cls }, delta));
    }
    const before = levelFigure(event.before);
    const after = levelFigure(event.after);
    const objects = (event.before && typeof event.before === "object")
      || (event.after && typeof event.after === "object");
    let text = "";
    if (before !== null && after !== null) text = `${before} \u2192 ${after}`;
    else if (after !== null) text = `${after}`;
    if (text) {
      if (objects) text = `avail. ${text}`;
      if (isNum(event.low_stock_below)) text += ` (below ${event.low_stock_below})`;
      cell.append(el("span", { className: "levels" }, text));
    }
    if (!cell.childNodes.length) cell.textContent = DASH;
    const title = [];
    if (event.before !== null && event.before !== undefined) title.push(`before: ${levelText(event.before)}`);
    if (event.after !== null && event.after !== undefined) title.push(`after: ${levelText(event.after)}`);
    if (event.reason) title.push(`reason: ${event.reason}`);
    if (isNum(event.version)) title.push(`version ${event.version}`);
    if (title.length) cell.title = title.join("\n");
    return cell;
  }

  function typeClass(type) {
    if (typeof type !== "string") return "ev-type";
    if (type === "stock.low") return "ev-type ev-low";
    if (type === "stock.recovered") return "ev-type ev-recovered";
    if (type.startsWith("reservation.")) return "ev-type ev-reservation";
    return "ev-type ev-stock";
  }

  function renderEvents(body) {
    const events = (Array.isArray(body.events) ? body.events : []).slice(0, EVENTS_LIMIT);
    partialNote($("events-partial"), body.unavailable_shards, "this list");
    const box = $("events");
    $("events-count").textContent = events.length ? `newest ${events.length}` : "";
    if (events.length === 0) {
      box.replaceChildren(el("p", { className: "empty" }, "No events yet."));
      return;
    }
    const rows = events.map((event) => {
      const time = el("time", { datetime: typeof event.at === "string" ? event.at : null },
        eventTime(event.at));
      if (typeof event.at === "string") time.title = event.at;
      const origin = [];
      if (isNum(event.shard)) origin.push(`shard ${event.shard}`);
      if (isNum(event.lsn)) origin.push(`LSN ${event.lsn}`);
      return el("tr", { title: origin.join(", ") || null },
        el("td", { className: "time" }, time),
        el("td", null, el("span", { className: typeClass(event.type) }, show(event.type))),
        el("td", null, skuLink(event.sku)),
        el("td", null, show(event.location)),
        changeCell(event),
        el("td", { className: "reference" }, event.reference ? String(event.reference) : DASH));
    });
    const table = el("table", { className: "data compact" },
      el("thead", null, el("tr", null,
        el("th", { scope: "col" }, "Time"),
        el("th", { scope: "col" }, "Type"),
        el("th", { scope: "col" }, "SKU"),
        el("th", { scope: "col" }, "Location"),
        el("th", { scope: "col" }, "Change"),
        el("th", { scope: "col" }, "Reference"))),
      el("tbody", null, ...rows));
    box.replaceChildren(table);
  }

  // ---------------------------------------------------------------- SKU lookup

  let lookupSeq = 0;

  async function lookUp(sku) {
    const result = $("sku-result");
    const seq = ++lookupSeq;
    if (!sku) {
      result.replaceChildren(el("p", { className: "muted" }, "Enter a SKU id."));
      return;
    }
    result.replaceChildren(el("p", { className: "muted" }, `Looking up ${sku}\u2026`));
    try {
      const body = await api(`/v1/skus/${encodeURIComponent(sku)}`);
      if (seq !== lookupSeq) return;
      renderSku(body);
    } catch (err) {
      if (seq !== lookupSeq) return;
      if (err instanceof AuthError) {
        result.replaceChildren();
        return;
      }
      if (err instanceof ApiError && err.status === 404) {
        result.replaceChildren(el("p", { className: "not-found" }, `SKU ${sku} not found`));
        return;
      }
      const problem = el("div", { className: "problem", role: "alert" },
        el("strong", null, err instanceof ApiError ? err.title : "Error"));
      const detail = err instanceof ApiError ? err.detail : describeError(err);
      if (detail) problem.append(el("p", null, detail));
      if (err instanceof ApiError && err.status) {
        problem.append(el("p", { className: "muted" }, `HTTP ${err.status}`));
      }
      result.replaceChildren(problem);
    }
  }

  function stat(label, value) {
    return el("div", { className: "stat" },
      el("span", { className: "stat-label" }, label),
      el("span", { className: "stat-value" }, show(value)));
  }

  function renderSku(body) {
    const totals = body.totals && typeof body.totals === "object" ? body.totals : {};
    const locations = Array.isArray(body.locations) ? body.locations : [];
    const head = el("div", { className: "sku-head" },
      el("h3", { className: "sku-id" }, show(body.sku)),
      el("span", { className: "muted sku-version" }, `version ${show(body.version)}`));
    const stats = el("div", { className: "stats" },
      stat("On hand", totals.on_hand),
      stat("Reserved", totals.reserved),
      stat("Available", totals.available));
    let table;
    if (locations.length === 0) {
      table = el("p", { className: "empty" }, "No locations.");
    } else {
      table = el("div", { className: "table-wrap" }, el("table", { className: "data compact" },
        el("thead", null, el("tr", null,
          el("th", { scope: "col" }, "Location"),
          el("th", { scope: "col", className: "num" }, "On hand"),
          el("th", { scope: "col", className: "num" }, "Reserved"),
          el("th", { scope: "col", className: "num" }, "Available"))),
        el("tbody", null, ...locations.map((level) => el("tr", null,
          el("td", null, show(level.location)),
          el("td", { className: "num" }, show(level.on_hand)),
          el("td", { className: "num" }, show(level.reserved)),
          el("td", { className: "num" }, show(level.available)))))));
    }
    $("sku-result").replaceChildren(head, stats, table);
  }

  // ---------------------------------------------------------------- state reset and wiring

  function resetData() {
    previous.clear();
    series.clear();
    totalOps.clear();
    $("shards").tBodies[0].replaceChildren();
    $("shards-summary").textContent = "";
    $("low-stock-table").tBodies[0].replaceChildren();
    $("low-stock-table").hidden = true;
    $("low-stock-empty").hidden = true;
    $("low-stock-partial").hidden = true;
    $("low-stock-count").textContent = "";
    $("events").replaceChildren(el("p", { className: "empty" }, "Loading\u2026"));
    $("events-partial").hidden = true;
    $("events-count").textContent = "";
    $("sku-result").replaceChildren();
    lookupSeq += 1;
  }

  function useNewKey() {
    resetData();
    showDashboard();
    fastPoller.now();
    slowPoller.now();
  }

  function init() {
    takeKeyFromFragment();

    $("api-key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const key = $("api-key").value.trim();
      if (!key) {
        const note = $("api-key-message");
        note.textContent = "Enter a key.";
        note.hidden = false;
        return;
      }
      storeKey(key);
      $("api-key").value = "";
      useNewKey();
    });

    // A bookmark with `#key=...` opened while the page is already showing.
    window.addEventListener("hashchange", () => {
      if (takeKeyFromFragment()) useNewKey();
    });

    $("api-key-forget").addEventListener("click", () => {
      forgetKey("Key forgotten.");
    });

    $("sku-search").addEventListener("submit", (event) => {
      event.preventDefault();
      lookUp($("sku-input").value);
    });

    document.addEventListener("visibilitychange", () => {
      if (document.hidden) {
        stopPolling();
      } else {
        // Rates across the pause would be averages over it: start them afresh.
        previous.clear();
        startPolling();
      }
    });

    if (typeof ResizeObserver === "function") {
      const observer = new ResizeObserver(() => drawCharts());
      observer.observe($("chart-ops"));
      observer.observe($("chart-queue"));
    }
    window.addEventListener("resize", drawCharts);
    // devicePixelRatio changes (zoom, moving to another screen) do not always resize.
    if (window.matchMedia) {
      const watchRatio = () => {
        const query = window.matchMedia(`(resolution: ${window.devicePixelRatio || 1}dppx)`);
        const changed = () => {
          query.removeEventListener("change", changed);
          drawCharts();
          watchRatio();
        };
        if (query.addEventListener) query.addEventListener("change", changed);
      };
      watchRatio();
    }

    if (getKey()) showDashboard();
    else showKeyForm("");
    startPolling();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
