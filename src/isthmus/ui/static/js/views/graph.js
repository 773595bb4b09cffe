// The graph page: toolbar (window, service nodes, idle workloads, animation), the SVG graph and the
// table of workload-to-workload edges exactly as /api/graph gives them.

import { buildModel, layout, legend, nodeHref, renderSvg, reportedKey } from "../graph.js";
import { byKey, empty, fmtMs, fmtPct, fmtRps, health, html, lock, setHTML } from "../util.js";

const STORE_KEY = "isthmus.graph.options";
const WINDOWS = [
  [30, "30 s"],
  [60, "1 min"],
  [300, "5 min"],
  [600, "10 min"],
];

function loadOptions() {
  const defaults = { window: 60, serviceNodes: true, idle: true, animate: true };
  try {
    return { ...defaults, ...JSON.parse(localStorage.getItem(STORE_KEY) || "{}") };
  } catch (_) {
    return defaults;
  }
}

function saveOptions(o) {
  try {
    localStorage.setItem(STORE_KEY, JSON.stringify(o));
  } catch (_) {
    /* private mode */
  }
}

export function apiNodeName(id, nodesById) {
  const n = nodesById.get(id);
  if (!n) return id;
  if (n.kind === "workload") return `${n.workload}`;
  if (n.kind === "service") return n.serviceName && n.serviceName !== "unknown" ? n.serviceName : n.service;
  return "unknown";
}

function nodeLink(id, nodesById) {
  const n = nodesById.get(id);
  const name = apiNodeName(id, nodesById);
  if (!n) return name;
  const href =
    n.kind === "workload"
      ? nodeHref({ kind: "workload", namespace: n.namespace, name: n.workload })
      : n.kind === "service"
        ? nodeHref({ kind: "service", namespace: n.namespace, name: n.serviceName })
        : null;
  const ns = n.namespace && n.namespace !== "unknown" ? html`<span class="muted">.${n.namespace}</span>` : "";
  return href ? html`<a href="${href}">${name}</a>${ns}` : html`${name}${ns}`;
}

function serviceLink(host) {
  const m = /^([^.]+)\.([^.]+)\.svc\./.exec(host);
  if (!m) return html`<span>${host}</span>`;
  return html`<a href="#/service/${encodeURIComponent(m[2])}/${encodeURIComponent(m[1])}">${m[1]}</a>`;
}

export function edgeRows(edges, nodesById) {
  if (!edges.length) return empty("No traffic in this window.");
  const rows = [...edges].sort(byKey((e) => `${e.source} ${e.destination}`));
  return html`<table class="edges-table">
    <thead><tr><th>source</th><th>destination</th><th>service</th><th>proto</th><th class="num">req/s</th>
    <th class="num">requests</th><th class="num">errors</th><th class="num">p50</th><th class="num">p99</th><th>mTLS</th><th>codes</th></tr></thead>
    <tbody>${rows.map(
      (e) => html`<tr class="edge-row h-${health(e.errorRate, e.requests)}" data-source="${e.source}" data-destination="${e.destination}"
        data-protocol="${e.protocol}" data-rps="${e.rps}" data-requests="${e.requests}" data-error-rate="${e.errorRate}"
        data-p50="${e.p50 ?? ""}" data-p99="${e.p99 ?? ""}" data-mtls="${e.mtls === true ? "true" : e.mtls === false ? "false" : "unknown"}">
        <td>${nodeLink(e.source, nodesById)}</td><td>${nodeLink(e.destination, nodesById)}</td>
        <td>${(e.services || []).map((s, i) => html`${i ? ", " : ""}${serviceLink(s)}`)}</td>
        <td>${e.protocol}</td><td class="num rps">${fmtRps(e.rps)}</td><td class="num">${e.requests}</td>
        <td class="num">${e.protocol === "tcp" ? "-" : fmtPct(e.errorRate)}</td>
        <td class="num">${fmtMs(e.p50)}</td><td class="num">${fmtMs(e.p99)}</td>
        <td>${lock(e.mtlsPercent !== null && e.mtlsPercent !== undefined && e.mtlsPercent > 0 && e.mtlsPercent < 100 ? "partial" : e.mtls, e.mtlsPercent !== null && e.mtlsPercent !== undefined ? `${e.mtlsPercent}% mutual TLS` : undefined)}</td>
        <td>${Object.entries(e.codes || {})
          .sort()
          .map(([c, n]) => html`<span class="badge ${c.startsWith("5") || c === "0" ? "bad" : c.startsWith("4") ? "warn" : "ok"}">${c} ×${n}</span>`)}</td>
      </tr>`,
    )}</tbody></table>`;
}

function drawnKey(g) {
  return `${g.dataset.source}\u0000${g.dataset.destination}\u0000${g.dataset.protocol}`;
}

// Selecting a drawn edge (or its label) marks it and the edges-table rows it stands for; the selection
// survives refreshes while the edge is still drawn. Returns the selection still in force.
export function applySelection(el, key, scroll) {
  const drawn = [...el.querySelectorAll("#graph-svg g.edge, #graph-svg g.elabel")];
  const hit = key === null ? [] : drawn.filter((g) => drawnKey(g) === key);
  for (const g of drawn) g.classList.toggle("selected", hit.includes(g));
  const reported = new Set(hit.flatMap((g) => (g.dataset.reported || "").split(" ").filter(Boolean)));
  const rows = [...el.querySelectorAll("#edges tr.edge-row")];
  const chosen = rows.filter((r) => reported.has(reportedKey(r.dataset.source, r.dataset.destination)));
  for (const r of rows) r.classList.toggle("selected", chosen.includes(r));
  const note = el.querySelector("#edges-selection");
  if (note) note.textContent = hit.length ? `${chosen.length} selected (click the edge again to clear)` : "";
  if (scroll && chosen.length) chosen[0].scrollIntoView({ block: "nearest" });
  return hit.length ? key : null;
}

export const graphPage = {
  mount(el, _params, _query, shell) {
    const opts = loadOptions();
    let selected = null;
    setHTML(
      el,
      html`<div class="toolbar" id="graph-toolbar">
        <h1 style="margin:0 10px 0 0">Service graph</h1>
        <label>window <select id="opt-window">${WINDOWS.map(
          ([v, t]) => html`<option value="${v}" ${v === opts.window ? "selected" : ""}>${t}</option>`,
        )}</select></label>
        <label><input type="checkbox" id="opt-services" ${opts.serviceNodes ? "checked" : ""}> service nodes</label>
        <label><input type="checkbox" id="opt-idle" ${opts.idle ? "checked" : ""}> idle workloads</label>
        <label><input type="checkbox" id="opt-animate" ${opts.animate ? "checked" : ""}> traffic animation</label>
        <span class="muted" id="graph-totals"></span>
      </div>
      <div class="graph-wrap" id="graph"></div>
      ${legend()}
      <div class="panel"><h2 style="margin-top:0">Edges <span class="muted">(workload to workload, as reported)</span> <span class="muted" id="edges-selection"></span></h2><div id="edges"></div></div>`,
    );
    el.querySelector("#graph").addEventListener("click", (ev) => {
      const g = ev.target.closest("g.edge, g.elabel");
      const key = g ? drawnKey(g) : null;
      selected = applySelection(el, key === selected ? null : key, true);
    });
    const bind = (id, key, parse) =>
      el.querySelector(id).addEventListener("change", (ev) => {
        opts[key] = parse(ev.target);
        saveOptions(opts);
        shell.refreshNow();
      });
    bind("#opt-window", "window", (t) => Number(t.value));
    bind("#opt-services", "serviceNodes", (t) => t.checked);
    bind("#opt-idle", "idle", (t) => t.checked);
    bind("#opt-animate", "animate", (t) => t.checked);
    return {
      title: "Graph",
      interval: 3000,
      async refresh(tick) {
        const [graph, status] = await Promise.all([tick.graph(opts.window), tick.status().catch(() => null)]);
        const model = buildModel(graph, status, opts);
        const lay = layout(model);
        const graphEl = el.querySelector("#graph");
        if (!model.nodes.size) {
          setHTML(graphEl, empty("No workloads yet."));
        } else {
          setHTML(graphEl, renderSvg(model, lay, opts));
        }
        graphEl.dataset.timestamp = String(graph.timestamp);
        const nodesById = new Map((graph.nodes || []).map((n) => [n.id, n]));
        setHTML(el.querySelector("#edges"), edgeRows(graph.edges || [], nodesById));
        selected = applySelection(el, selected, false);
        const http = (graph.edges || []).filter((e) => e.protocol !== "tcp");
        const total = http.reduce((s, e) => s + e.rps, 0);
        setHTML(
          el.querySelector("#graph-totals"),
          `${(graph.edges || []).length} edges · ${fmtRps(total)} req/s across all edges in the last ${graph.windowSeconds} s`,
        );
      },
    };
  },
};
