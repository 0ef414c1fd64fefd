// The web dashboard's behaviour (federation/hub/web.py serves it; no inline script under the CSP).
// Pages fetch their /ui/api/... data and update in place when the hub's server-sent events
// (/ui/api/stream, hub/webstream.py) say it changed, and every LIVE_POLL_MS besides (time in phase);
// while the stream is down (the browser reconnects by itself) they poll every POLL_MS. Actions POST
// with the session's CSRF token and show the hub's answer. Data goes in the page as text, never HTML.
"use strict";

const POLL_MS = 2000;
const LIVE_POLL_MS = 30000;
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const body = document.body;
const content = document.getElementById("content");
const statusLine = document.getElementById("status");

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return e;
}

function table(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) => el("td", {}, c))))));
}

async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (r.status === 401) { window.location.assign("/ui/login"); throw new Error("no session"); }
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return r.json();
}

async function post(url) {
  const r = await fetch(url, { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf } });
  let answer;
  try { answer = await r.json(); } catch (e) { answer = { state: "error", message: `HTTP ${r.status}` }; }
  return { status: r.status, answer };
}

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.round(seconds);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${Math.round(s / 3600)}h`;
}

const pct = (bp) => `${(bp / 100).toFixed(bp % 100 ? 2 : 0)}%`;

function weightBars(weights) {
  return el("div", { class: "bars" }, ...Object.entries(weights || {}).map(([subset, w]) =>
    el("div", {}, el("meter", { min: "0", max: "10000", value: String(w), title: subset }), `${subset} ${pct(w)}`)));
}

// -- fleet ------------------------------------------------------------------------------------

async function fleet() {
  const data = await getJSON("/ui/api/fleet");
  const rows = data.zones.map((z) => [
    z.name, z.kind,
    el("span", { class: z.reachable === false ? "bad" : z.reachable ? "good" : "" },
      z.reachable === null ? "no rollout yet" : z.reachable ? "reachable" : "not answering"),
    el("div", {}, el("div", { text: `Git ${z.git}` }), el("div", { text: `Prometheus ${z.prometheus}` }),
      ...(z.hosts.length ? [el("div", { text: `agents ${z.hosts.join(", ")}` })] : [])),
    el("div", {}, ...Object.entries(z.rollouts).map(([k, s]) =>
      el("div", { text: `${k}: step ${s.appliedStep ?? "unknown"}${s.waiting ? " — " + s.waiting : ""}` }))),
    el("div", {}, ...Object.values(z.rollouts).flatMap((s) => s.reasons).map((r) => el("div", { class: "bad", text: r }))),
  ]);
  if (!document.getElementById("check-fleet")) {
    const button = el("button", { type: "button", id: "check-fleet" }, "Check reachability now");
    button.addEventListener("click", async () => {
      button.disabled = true;
      const { status } = await post("/ui/api/fleet/check");
      button.disabled = false;
      if (status !== 200) statusLine.textContent = `check refused: HTTP ${status}`;
      refresh();
    });
    content.replaceChildren(el("div", { id: "zones" }), el("h2", { text: "Reachability (Git, Prometheus, SSH or API, Flux, Envoys)" }),
      button, el("div", { id: "reach" }));
  }
  document.getElementById("zones").replaceChildren(table(["zone", "kind", "state", "sources", "rollouts", "last errors"], rows));
  document.getElementById("reach").replaceChildren(data.reach.at === null
    ? el("p", { text: "not checked yet" })
    : el("div", {}, el("p", { text: `checked ${new Date(data.reach.at * 1000).toLocaleTimeString()}` }),
      table(["zone", "part", "target", "reachable", "detail"], data.reach.rows.map((r) =>
        [r.zone, r.part, r.target, el("span", { class: r.ok ? "good" : "bad" }, r.ok ? "yes" : "NO"), r.detail]))));
}

// -- rollouts ---------------------------------------------------------------------------------

let phaseFilter = "";

async function rollouts() {
  const data = await getJSON("/ui/api/rollouts");
  const phases = [...new Set(data.items.map((r) => r.phase))].sort();
  // Built once; its options change only when the phases do (an open list is not closed by an update).
  let select = document.getElementById("phase-filter");
  if (!select) {
    select = el("select", { id: "phase-filter", "aria-label": "phase" });
    select.addEventListener("change", () => { phaseFilter = select.value; refresh(); });
    content.replaceChildren(el("div", { class: "filter" }, select), el("div", { id: "hub-errors" }), el("div", { id: "rollout-table" }));
  }
  if (select.dataset.phases !== phases.join(",")) {
    select.dataset.phases = phases.join(",");
    select.replaceChildren(el("option", { value: "" }, "every phase"), ...phases.map((p) => el("option", { value: p }, p)));
    select.value = phaseFilter;
  }
  const items = data.items.filter((r) => !phaseFilter || r.phase === phaseFilter);
  const rows = items.map((r) => {
    const [ns, name] = r.rollout.split("/");
    const failed = r.checks.filter((c) => c.outcome !== "pass");
    return [
      el("a", { href: `/ui/rollouts/${encodeURIComponent(ns)}/${encodeURIComponent(name)}` }, r.rollout),
      el("span", { class: `phase phase-${r.phase}${r.paused ? " paused" : ""}` }, r.phase + (r.paused ? " (paused)" : "")),
      pct(r.canaryWeight), weightBars(r.weights),
      r.message,
      el("div", {}, ...failed.map((c) => el("div", { class: "bad", text: `${c.metric}@${c.zone ?? "global"}: ${c.message || c.outcome}` }))),
      `${r.failedChecks}/${r.threshold ?? "?"}`,
      ago(r.inPhaseSeconds),
    ];
  });
  document.getElementById("hub-errors").replaceChildren(...Object.values(data.errors || {}).map((e) =>
    el("p", { class: "bad", role: "alert", text: `hub: ${e}` })));
  document.getElementById("rollout-table").replaceChildren(
    table(["rollout", "phase", "canary", "weights per zone", "last analysis", "failed checks", "count", "in phase"], rows));
}

// -- one rollout ------------------------------------------------------------------------------

let chart = null;
const metricCharts = {};
// Chart.js colours series itself only when none sets a colour; the bounds set theirs, so zones get these.
const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#e377c2"];

// One chart per metric: its value per zone (and global) at each step's analysis, and its bounds.
function metricChart(box, metric, bounds, steps) {
  const labels = steps.map((s) => `step ${s.step}`);
  const zones = [...new Set(steps.flatMap((s) => s.checks.filter((c) => c.metric === metric).map((c) => c.zone ?? "global")))].sort();
  const datasets = zones.map((z, i) => ({
    label: z, borderColor: PALETTE[i % PALETTE.length], backgroundColor: PALETTE[i % PALETTE.length],
    data: steps.map((s) => { const c = s.checks.find((x) => x.metric === metric && (x.zone ?? "global") === z); return c ? c.value : null; }),
    spanGaps: true,
  }));
  for (const [name, v] of Object.entries(bounds)) {
    if (v !== null && v !== undefined) datasets.push({ label: `${name} ${v}`, data: steps.map(() => v), borderDash: [6, 6], pointRadius: 0, borderColor: "#b00020" });
  }
  const existing = metricCharts[metric];
  if (existing) {
    existing.data.labels = labels;
    existing.data.datasets = datasets;
    existing.update("none");
    return;
  }
  const canvas = el("canvas", { id: `metric-${metric}`, "aria-label": `${metric} per zone against its thresholds` });
  box.append(el("h3", { text: metric }), el("div", { class: "chart" }, canvas));
  metricCharts[metric] = new window.Chart(canvas, { type: "line", data: { labels, datasets },
    options: { animation: false, responsive: true, elements: { line: { tension: 0 } } } });
}

function weightChart(steps) {
  const subsets = [...new Set(steps.flatMap((s) => Object.keys(s.weights)))].sort();
  const labels = steps.map((s) => `step ${s.step}`);
  const datasets = subsets.map((sub) => ({ label: sub, data: steps.map((s) => (s.weights[sub] ?? 0) / 100), fill: true }));
  if (chart) {
    chart.data.labels = labels;
    chart.data.datasets = datasets;
    chart.update("none");
    return chart;
  }
  const canvas = el("canvas", { id: "weights-chart", "aria-label": "weight per zone and version over steps" });
  chart = new window.Chart(canvas, {
    type: "line",
    data: { labels, datasets },
    options: { animation: false, responsive: true,
      scales: { y: { stacked: true, min: 0, max: 100, title: { display: true, text: "% of traffic" } } },
      elements: { line: { tension: 0 } } },
  });
  return chart;
}

async function rollout() {
  const key = body.dataset.rollout;
  const data = await getJSON(`/ui/api/rollouts/${key}`);
  if (!document.getElementById("weights-box")) {
    const actions = el("div", { class: "actions" }, ...["pause", "resume", "promote", "abort", "retry"].map((c) => {
      const b = el("button", { type: "button", id: `action-${c}` }, c);
      b.addEventListener("click", async () => {
        const { answer } = await post(`/ui/api/rollouts/${key}/${c}`);
        document.getElementById("answer").textContent = `${c}: ${answer.state} — ${answer.message ?? answer.detail ?? ""}`;
        refresh();
      });
      return b;
    }), el("span", { id: "answer", class: "answer", role: "status" }));
    const box = el("div", { id: "weights-box", class: "chart" });
    content.replaceChildren(el("div", { id: "summary" }), actions, el("h2", { text: "Weight per zone and version over steps" }),
      box, el("h2", { text: "Analysis per step against thresholds" }), el("div", { id: "metric-charts" }),
      el("h2", { text: "Last analysis" }), el("div", { id: "checks" }),
      el("h2", { text: "Webhooks and gates" }), el("div", { id: "webhooks" }), el("h2", { text: "Events" }), el("div", { id: "events" }),
      el("h2", { text: "Steps" }), el("div", { id: "steps" }),
      el("h2", { text: "Commits per step (from Git)" }), el("div", { id: "commits" }));
    box.append(weightChart(data.steps).canvas);
  } else {
    weightChart(data.steps);
  }
  document.getElementById("summary").replaceChildren(
    el("p", {}, el("span", { class: `phase phase-${data.phase}` }, data.phase + (data.paused ? " (paused)" : "")),
      ` — canary ${pct(data.canaryWeight)} at step ${data.step}; ${data.message}`),
    weightBars(data.weights));
  document.getElementById("checks").replaceChildren(table(["metric", "zone", "value", "outcome", "message"],
    data.checks.map((c) => [c.metric, c.zone ?? "global", c.value ?? "no data",
      el("span", { class: c.outcome === "pass" ? "good" : "bad" }, c.outcome), c.message])));
  const charts = document.getElementById("metric-charts");
  for (const [metric, bounds] of Object.entries(data.thresholds)) metricChart(charts, metric, bounds, data.steps);
  document.getElementById("webhooks").replaceChildren(table(["name", "type", "url", "last answer"],
    data.webhooks.map((h) => [h.name, h.type, h.url, h.last === null
      ? "not called yet"
      : el("span", { class: h.last.ok ? "good" : "bad" },
        `${h.last.ok ? "passed" : "refused"}${h.last.message ? ": " + h.last.message : ""} at ${new Date(h.last.at * 1000).toLocaleTimeString()}`)])));
  document.getElementById("events").replaceChildren(table(["time", "severity", "reason", "message"],
    [...data.events].reverse().map((e) => [new Date(e.at * 1000).toLocaleTimeString(),
      el("span", { class: e.severity === "info" ? "" : "bad" }, e.severity), e.reason, e.message])));
  const history = await getJSON(`/ui/api/rollouts/${key}/history`);
  document.getElementById("commits").replaceChildren(table(["step", "stage", "time", "subject", "analysis", "commits"],
    history.items.map((s) => [s.step, s.stage, new Date(s.time * 1000).toLocaleString(), s.subject, s.analysis ?? "",
      el("div", {}, ...s.commits.map((c) => el("div", {}, `${c.repo} `,
        c.url ? el("a", { href: c.url, rel: "noreferrer" }, c.sha.slice(0, 12)) : el("code", {}, c.sha.slice(0, 12)))))])));
  document.getElementById("steps").replaceChildren(table(["step", "stage", "canary", "weights"],
    data.steps.map((s) => [s.step, s.stage, pct(s.canaryWeight),
      Object.entries(s.weights).map(([k, w]) => `${k} ${pct(w)}`).join(", ")])));
}

// -- shell ------------------------------------------------------------------------------------

const pages = { fleet, rollouts, rollout };
let timer = null;
let running = false;
let again = false;
// body.dataset.live: "sse" while the stream is open, "polling" otherwise; dataset.pushed counts
// the updates the stream caused (the browser test reads both).
body.dataset.live = "polling";
body.dataset.pushed = "0";

async function refresh() {
  if (running) { again = true; return; } // one fetch at a time; a change meanwhile fetches once more
  running = true;
  clearTimeout(timer);
  try {
    await pages[body.dataset.page]();
    const how = body.dataset.live === "sse" ? "live" : `polling every ${POLL_MS / 1000}s`;
    statusLine.textContent = `updated ${new Date().toLocaleTimeString()} (${how})`;
  } catch (e) {
    statusLine.textContent = `not updated: ${e.message}`;
  }
  running = false;
  if (again) { again = false; refresh(); return; }
  timer = setTimeout(refresh, body.dataset.live === "sse" ? LIVE_POLL_MS : POLL_MS);
}

function live() {
  if (!window.EventSource) return; // polling only
  const key = body.dataset.rollout;
  const source = new EventSource(`/ui/api/stream${key ? `?rollout=${encodeURIComponent(key)}` : ""}`);
  source.addEventListener("open", () => { body.dataset.live = "sse"; });
  source.addEventListener("change", () => {
    body.dataset.pushed = String(Number(body.dataset.pushed) + 1);
    refresh();
  });
  source.addEventListener("logout", () => { source.close(); window.location.assign("/ui/login"); });
  source.addEventListener("error", () => {
    // The browser reconnects by itself (the stream's retry:); until then the page polls. A stream
    // refused (no session, too many streams) is closed for good: try again later.
    body.dataset.live = "polling";
    if (source.readyState === EventSource.CLOSED) setTimeout(live, 10 * POLL_MS);
    clearTimeout(timer);
    timer = setTimeout(refresh, POLL_MS);
  });
}

document.getElementById("logout").addEventListener("click", async () => {
  await post("/ui/logout");
  window.location.assign("/ui/login");
});
refresh();
live();
