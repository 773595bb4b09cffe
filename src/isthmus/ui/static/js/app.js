// The dashboard shell: hash router, refresh loop, header (mesh summary, validation count, live state).
//
// A page is {mount(el, params, query) -> {refresh(tick) -> Promise, interval?, unmount?()}}. The shell
// calls refresh() on entry and then every `interval` ms (after the previous refresh finished, so slow
// answers never pile up). `tick` memoizes the shared loaders (status, analysis, graph) for one round.

import { api } from "./api.js";
import { ago, esc, setHTML } from "./util.js";
import { graphPage } from "./views/graph.js";
import { servicesPage, workloadsPage } from "./views/lists.js";
import { servicePage, workloadPage } from "./views/detail.js";
import { tracePage, tracesPage } from "./views/traces.js";
import { validationPage } from "./views/validation.js";

const DEFAULT_INTERVAL = 3000;

const ROUTES = [
  [/^\/graph$/, "graph", graphPage],
  [/^\/services$/, "services", servicesPage],
  [/^\/service\/([^/]+)\/([^/]+)$/, "services", servicePage],
  [/^\/workloads$/, "workloads", workloadsPage],
  [/^\/workload\/([^/]+)\/([^/]+)$/, "workloads", workloadPage],
  [/^\/traces$/, "traces", tracesPage],
  [/^\/trace\/([^/]+)$/, "traces", tracePage],
  [/^\/validation$/, "validation", validationPage],
];

const state = {
  page: null,
  route: "",
  timer: null,
  paused: false,
  generation: 0,
  refreshes: 0,
  lastOk: null,
  running: false,
  again: false,
};

function parseHash() {
  const h = window.location.hash.replace(/^#/, "") || "/graph";
  const [path, qs] = h.split("?");
  return { path, query: new URLSearchParams(qs || "") };
}

export function makeTick() {
  const memo = new Map();
  const once = (key, fn) => {
    if (!memo.has(key)) memo.set(key, fn());
    return memo.get(key);
  };
  return {
    status: () => once("status", api.status),
    analysis: () => once("analysis", api.analysis),
    graph: (window) => once(`graph:${window}`, () => api.graph(window)),
  };
}

async function header(tick) {
  const [status, analysis] = await Promise.allSettled([tick.status(), tick.analysis()]);
  if (status.status === "fulfilled") {
    const s = status.value;
    const proxies = s.proxies || [];
    const synced = proxies.filter(
      (p) => p.configVersion === s.configVersion && Object.values(p.sync || {}).every((v) => v === "SYNCED"),
    ).length;
    const nacks = proxies.filter((p) => Object.keys(p.nacks || {}).length).length;
    const text = `config v${s.configVersion} · ${synced}/${proxies.length} proxies synced${nacks ? ` · ${nacks} NACK` : ""}`;
    setHTML(document.getElementById("mesh-summary"), text);
  }
  let issues = 0;
  if (analysis.status === "fulfilled") {
    issues += (analysis.value.messages || []).filter((m) => m.level === "Error" || m.level === "Warning").length;
  }
  if (status.status === "fulfilled") {
    const s = status.value;
    issues += Object.values(s.configErrors || {}).reduce((n, errs) => n + errs.length, 0);
    issues += Object.keys(s.generationErrors || {}).length;
  }
  setHTML(document.getElementById("nav-issues"), issues ? String(issues) : "");
  return status.status === "fulfilled";
}

function setLive(kind, message) {
  const dot = document.getElementById("refresh-state");
  dot.dataset.state = state.paused ? "paused" : kind;
  const banner = document.getElementById("banner");
  if (message) {
    banner.hidden = false;
    setHTML(banner, message);
  } else {
    banner.hidden = true;
  }
}

function showUpdated() {
  const el = document.getElementById("updated");
  if (!state.lastOk) return;
  const t = new Date(state.lastOk).toLocaleTimeString([], { hour12: false });
  setHTML(el, state.paused ? `paused · ${t}` : `updated ${t}`);
  el.title = `last refresh ${ago(state.lastOk)}`;
}

async function refresh() {
  const gen = state.generation;
  const page = state.page;
  if (!page || state.running) return;
  state.running = true;
  setLive("loading");
  const tick = makeTick();
  let error = null;
  try {
    const [headerOk] = await Promise.all([header(tick), page.refresh(tick)]);
    if (!headerOk) error = "The control plane does not answer: showing the last data received.";
  } catch (e) {
    error = esc(e?.message || String(e));
    console.error(e);
  } finally {
    state.running = false;
  }
  if (gen !== state.generation) return; // the route changed meanwhile; the new page has its own loop
  state.refreshes += 1;
  document.body.dataset.refreshes = String(state.refreshes);
  if (!error) state.lastOk = Date.now();
  setLive(error ? "error" : "ok", error);
  showUpdated();
  if (state.again) {
    state.again = false;
    refresh();
  } else {
    schedule();
  }
}

function schedule() {
  clearTimeout(state.timer);
  state.timer = null;
  if (state.paused || !state.page) return;
  const interval = state.page.interval ?? DEFAULT_INTERVAL;
  if (interval > 0) state.timer = setTimeout(refresh, interval);
}

function navigate() {
  const { path, query } = parseHash();
  for (const [re, nav, page] of ROUTES) {
    const m = re.exec(path);
    if (!m) continue;
    if (state.page?.unmount) state.page.unmount();
    clearTimeout(state.timer);
    state.generation += 1;
    state.running = false;
    state.again = false;
    state.route = path;
    document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === nav));
    const el = document.getElementById("view");
    el.__html = undefined;
    el.innerHTML = '<p class="empty">Loading…</p>';
    const params = m.slice(1).map((p) => decodeURIComponent(p));
    state.page = page.mount(el, params, query, { refreshNow: () => refreshNow() });
    document.title = `${state.page.title || nav} · Isthmus`;
    window.scrollTo(0, 0);
    refresh();
    return;
  }
  window.location.hash = "#/graph";
}

function refreshNow() {
  clearTimeout(state.timer);
  if (state.running) state.again = true;
  else refresh();
}

function togglePause() {
  state.paused = !state.paused;
  const btn = document.getElementById("pause");
  btn.textContent = state.paused ? "resume" : "pause";
  document.body.dataset.paused = String(state.paused);
  if (state.paused) {
    clearTimeout(state.timer);
    setLive("paused");
  } else {
    refreshNow();
  }
  showUpdated();
}

// A click anywhere on a trace row opens the trace (the start time is the keyboard-reachable link).
document.addEventListener("click", (ev) => {
  const row = ev.target.closest("tr.trace-row");
  if (row && !ev.target.closest("a") && !window.getSelection()?.toString()) {
    window.location.hash = `#/trace/${encodeURIComponent(row.dataset.traceId)}`;
  }
});
window.addEventListener("hashchange", navigate);
document.getElementById("pause").addEventListener("click", togglePause);
// A hidden tab stops polling; coming back refreshes at once.
document.addEventListener("visibilitychange", () => {
  if (document.hidden) clearTimeout(state.timer);
  else if (!state.paused) refreshNow();
});
navigate();
