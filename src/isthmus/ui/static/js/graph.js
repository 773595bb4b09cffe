// The service graph: model (from /api/graph + /api/status), layered layout, SVG rendering.
//
// /api/graph gives workload -> workload edges (with the services each one went through). With service
// nodes on (Kiali's default), each such edge becomes source -> service -> destination workload, and
// edges that meet on the same pair are merged: requests/s and errors add up exactly; p50 becomes the
// request-weighted mean of the parts' p50 and p99 their maximum (both marked "~" when merged).

import { esc, fmtMs, fmtPct, fmtRps, health, html, raw } from "./util.js";

const COL_W = 265;
const ROW_H = 92;
const MARGIN_X = 80;
const MARGIN_Y = 46;
const R = 19;

function serviceParts(host) {
  const m = /^([^.]+)\.([^.]+)\.svc\./.exec(host || "");
  return m ? { name: m[1], namespace: m[2] } : { name: host, namespace: "" };
}

export function nodeHref(n) {
  const enc = encodeURIComponent;
  if (n.kind === "workload") return `#/workload/${enc(n.namespace)}/${enc(n.name)}`;
  if (n.kind === "service" && n.namespace) return `#/service/${enc(n.namespace)}/${enc(n.name)}`;
  return null;
}

export function workloadId(namespace, name) {
  return `workload:${namespace}/${name}`;
}

export function serviceId(host) {
  return `service:${host}`;
}

function apiNode(n) {
  if (n.kind === "workload") {
    return { id: n.id, kind: "workload", namespace: n.namespace, name: n.workload, app: n.app, version: n.version };
  }
  if (n.kind === "service") {
    const p = serviceParts(n.service);
    return {
      id: n.id,
      kind: "service",
      host: n.service,
      namespace: n.namespace && n.namespace !== "unknown" ? n.namespace : p.namespace,
      name: n.serviceName && n.serviceName !== "unknown" ? n.serviceName : p.name,
    };
  }
  return { id: n.id, kind: "unknown", name: "unknown", namespace: "" };
}

function mtlsState(e) {
  if (e.mtlsPercent === null || e.mtlsPercent === undefined) return e.mtls === true ? "T" : e.mtls === false ? "F" : null;
  if (e.mtlsPercent >= 100) return "T";
  if (e.mtlsPercent <= 0) return "F";
  return "P";
}

// One reported (workload to workload) edge, as the edges table lists it: what a drawn edge stands for.
export function reportedKey(source, destination) {
  return `${encodeURIComponent(source)}>${encodeURIComponent(destination)}`;
}

// The graph model the page draws: {nodes: Map(id -> node), edges: [edge]}.
export function buildModel(graph, status, opts) {
  const nodes = new Map();
  const add = (n) => {
    if (!nodes.has(n.id)) nodes.set(n.id, n);
    return nodes.get(n.id);
  };
  for (const n of graph?.nodes || []) add(apiNode(n));
  const merged = new Map();
  const agg = (src, dst, e) => {
    const key = `${src}\u0000${dst}\u0000${e.protocol}`;
    let a = merged.get(key);
    if (!a) {
      a = { key, source: src, destination: dst, protocol: e.protocol, requests: 0, rps: 0, errors: 0,
            p50w: 0, p50n: 0, p50: null, p99: null, mtls: new Set(), codes: {}, parts: 0, bytesPerSecond: 0,
            services: new Set(), reported: new Set() }; // prettier-ignore
      merged.set(key, a);
    }
    a.parts += 1;
    a.requests += e.requests || 0;
    a.rps += e.rps || 0;
    a.errors += (e.errorRate || 0) * (e.requests || 0);
    if (e.p50 !== null && e.p50 !== undefined) {
      a.p50 = e.p50;
      a.p50w += e.p50 * Math.max(1, e.requests || 0);
      a.p50n += Math.max(1, e.requests || 0);
    }
    if (e.p99 !== null && e.p99 !== undefined) a.p99 = a.p99 === null ? e.p99 : Math.max(a.p99, e.p99);
    const m = mtlsState(e);
    if (m) a.mtls.add(m);
    for (const [c, n] of Object.entries(e.codes || {})) a.codes[c] = (a.codes[c] || 0) + n;
    a.bytesPerSecond += e.bytesPerSecond || 0;
    for (const s of e.services || []) a.services.add(s);
    a.reported.add(reportedKey(e.source, e.destination)); // the table rows this drawn edge stands for
  };
  for (const e of graph?.edges || []) {
    const dst = nodes.get(e.destination);
    const svc = (e.services || [])[0];
    if (opts.serviceNodes && svc && dst && dst.kind === "workload") {
      const sid = serviceId(svc);
      const p = serviceParts(svc);
      add({ id: sid, kind: "service", host: svc, namespace: p.namespace, name: p.name });
      agg(e.source, sid, e);
      agg(sid, e.destination, e);
    } else {
      agg(e.source, e.destination, e);
    }
  }
  const edges = [...merged.values()].map((a) => {
    const m = a.mtls;
    let mtls = null;
    if (m.has("P") || (m.has("T") && m.has("F"))) mtls = "partial";
    else if (m.has("T")) mtls = true;
    else if (m.has("F")) mtls = false;
    return {
      id: a.key,
      source: a.source,
      destination: a.destination,
      protocol: a.protocol,
      requests: a.requests,
      rps: a.rps,
      errorRate: a.requests ? a.errors / a.requests : 0,
      p50: a.parts > 1 ? (a.p50n ? a.p50w / a.p50n : null) : a.p50,
      p99: a.p99,
      approx: a.parts > 1,
      mtls,
      codes: a.codes,
      bytesPerSecond: a.bytesPerSecond,
      services: [...a.services].sort(),
      reported: [...a.reported].sort(),
    };
  });
  edges.sort((x, y) => (x.source + x.destination < y.source + y.destination ? -1 : 1));

  // What /api/status knows: gateways, pods without sidecar, proxies' sync state, idle workloads.
  const byWorkload = new Map();
  for (const inst of status?.instances || []) {
    const id = workloadId(inst.namespace, inst.workload);
    const w = byWorkload.get(id) || { gateway: false, sidecar: false, instances: 0, notRunning: 0 };
    w.gateway ||= !!inst.gateway;
    w.sidecar ||= !!inst.sidecar || !!inst.gateway;
    w.instances += 1;
    if (inst.state && inst.state !== "Running") w.notRunning += 1;
    byWorkload.set(id, w);
    if (opts.idle && !nodes.has(id)) {
      add({ id, kind: "workload", namespace: inst.namespace, name: inst.workload, idle: true });
    }
  }
  const sync = new Map();
  for (const p of status?.proxies || []) {
    const id = workloadId(p.namespace, p.workload);
    const s = sync.get(id) || { nacks: 0, stale: 0 };
    s.nacks += Object.keys(p.nacks || {}).length;
    s.stale += Object.values(p.sync || {}).filter((v) => v !== "SYNCED").length;
    sync.set(id, s);
  }
  for (const n of nodes.values()) {
    n.rpsIn = 0;
    n.rpsOut = 0;
    n.requestsIn = 0;
    n.errorsIn = 0;
    const w = byWorkload.get(n.id);
    if (w) Object.assign(n, { gateway: w.gateway, noSidecar: !w.sidecar, notRunning: w.notRunning });
    const s = sync.get(n.id);
    if (s) Object.assign(n, { nacks: s.nacks, stale: s.stale });
  }
  for (const e of edges) {
    const s = nodes.get(e.source);
    const d = nodes.get(e.destination);
    if (s) s.rpsOut += e.rps;
    if (d) {
      d.rpsIn += e.rps;
      d.requestsIn += e.requests;
      d.errorsIn += e.errorRate * e.requests;
    }
  }
  for (const n of nodes.values()) {
    n.errorRate = n.requestsIn ? n.errorsIn / n.requestsIn : 0;
    n.health = n.kind === "unknown" ? "idle" : health(n.errorRate, n.requestsIn || (n.rpsOut ? 1 : 0));
  }
  return { nodes, edges };
}

// --- layout: layers by longest path (cycles broken by DFS), order by barycenter sweeps --------------

function kindRank(n) {
  if (n.kind === "unknown") return 0;
  if (n.gateway) return 1;
  return 2;
}

export function layout(model) {
  const nodes = model.nodes;
  const ids = [...nodes.keys()].sort();
  const out = new Map(ids.map((i) => [i, []]));
  const inn = new Map(ids.map((i) => [i, []]));
  const connected = new Set();
  for (const e of model.edges) {
    if (!nodes.has(e.source) || !nodes.has(e.destination) || e.source === e.destination) continue;
    out.get(e.source).push(e.destination);
    inn.get(e.destination).push(e.source);
    connected.add(e.source);
    connected.add(e.destination);
  }
  // Break cycles: edges that close a DFS cycle are reversed for layering only.
  const state = new Map();
  const back = new Set();
  const dfs = (v) => {
    state.set(v, 1);
    for (const w of out.get(v)) {
      if (state.get(w) === 1) back.add(`${v}\u0001${w}`);
      else if (!state.get(w)) dfs(w);
    }
    state.set(v, 2);
  };
  const starts = ids
    .filter((i) => connected.has(i))
    .sort((a, b) => inn.get(a).length - inn.get(b).length || (a < b ? -1 : 1));
  for (const v of starts) if (!state.get(v)) dfs(v);
  const preds = new Map(ids.map((i) => [i, new Set()]));
  const succs = new Map(ids.map((i) => [i, new Set()]));
  for (const v of ids) {
    for (const w of out.get(v)) {
      const [a, b] = back.has(`${v}\u0001${w}`) ? [w, v] : [v, w];
      preds.get(b).add(a);
      succs.get(a).add(b);
    }
  }
  const layer = new Map();
  const layerOf = (v) => {
    if (layer.has(v)) return layer.get(v);
    layer.set(v, 0);
    let l = 0;
    for (const p of preds.get(v)) l = Math.max(l, layerOf(p) + 1);
    layer.set(v, l);
    return l;
  };
  for (const v of connected) layerOf(v);
  // Sources feeding only deep nodes move next to them.
  for (const v of connected) {
    if (preds.get(v).size || !succs.get(v).size) continue;
    const min = Math.min(...[...succs.get(v)].map((s) => layer.get(s)));
    layer.set(v, Math.max(0, min - 1));
  }
  const nLayers = connected.size ? Math.max(...[...connected].map((v) => layer.get(v))) + 1 : 0;
  const layers = Array.from({ length: nLayers }, () => []);
  for (const v of connected) layers[layer.get(v)].push(v);
  const rankKey = (v) => {
    const n = nodes.get(v);
    return [kindRank(n), n.namespace || "", n.name || "", v];
  };
  const cmp = (a, b) => {
    const ka = rankKey(a);
    const kb = rankKey(b);
    for (let i = 0; i < ka.length; i++) if (ka[i] !== kb[i]) return ka[i] < kb[i] ? -1 : 1;
    return 0;
  };
  for (const l of layers) l.sort(cmp);
  const pos = new Map();
  const reindex = () => layers.forEach((l) => l.forEach((v, i) => pos.set(v, i)));
  reindex();
  const sweep = (from, to, step, neighbours) => {
    for (let i = from; i !== to; i += step) {
      const bc = new Map();
      for (const v of layers[i]) {
        const ns = [...neighbours.get(v)].filter((u) => layer.get(u) === i - step);
        bc.set(v, ns.length ? ns.reduce((s, u) => s + pos.get(u), 0) / ns.length : pos.get(v));
      }
      layers[i].sort((a, b) => bc.get(a) - bc.get(b) || pos.get(a) - pos.get(b));
      reindex();
    }
  };
  for (let it = 0; it < 4; it++) {
    sweep(1, nLayers, 1, preds);
    sweep(nLayers - 2, -1, -1, succs);
  }
  const maxRows = Math.max(1, ...layers.map((l) => l.length));
  const coords = new Map();
  layers.forEach((l, li) => {
    const offset = ((maxRows - l.length) * ROW_H) / 2;
    l.forEach((v, i) => coords.set(v, { x: MARGIN_X + li * COL_W, y: MARGIN_Y + offset + i * ROW_H }));
  });
  const idle = ids.filter((i) => !connected.has(i)).sort(cmp);
  const idleTop = connected.size ? MARGIN_Y + maxRows * ROW_H + 10 : MARGIN_Y;
  const perRow = Math.max(1, Math.max(nLayers, 5));
  const idleStep = connected.size ? Math.min(COL_W, 170) : 170;
  idle.forEach((v, i) => {
    coords.set(v, { x: MARGIN_X + (i % perRow) * idleStep, y: idleTop + Math.floor(i / perRow) * ROW_H });
  });
  const idleRows = Math.ceil(idle.length / perRow);
  const width = Math.max(
    MARGIN_X * 2 + Math.max(0, nLayers - 1) * COL_W,
    MARGIN_X * 2 + Math.max(0, Math.min(idle.length, perRow) - 1) * idleStep,
  );
  const height = (idle.length ? idleTop + idleRows * ROW_H : MARGIN_Y + maxRows * ROW_H) + 4;
  return { coords, width, height, idleTop: idle.length && connected.size ? idleTop - 24 : null };
}

// --- rendering ----------------------------------------------------------------------------------------

function nodeShape(n) {
  if (n.kind === "service") {
    const h = R * 1.9;
    return `<path class="shape" d="M0,${-h / 2 - 2} L${h / 2 + 2},${h / 2 - 2} L${-h / 2 - 2},${h / 2 - 2} Z"/>`;
  }
  if (n.kind === "unknown") return `<circle class="shape" r="${R - 2}"/><text class="glyph" dy="5">?</text>`;
  if (n.gateway) {
    const pts = Array.from({ length: 6 }, (_, i) => {
      const a = (Math.PI / 3) * i;
      return `${(Math.cos(a) * (R + 1)).toFixed(1)},${(Math.sin(a) * (R + 1)).toFixed(1)}`;
    }).join(" ");
    return `<polygon class="shape" points="${pts}"/><text class="glyph" dy="4">GW</text>`;
  }
  return `<circle class="shape" r="${R}"/>`;
}

function nodeTitle(n) {
  const kind = n.kind === "workload" ? (n.gateway ? "gateway" : "workload") : n.kind;
  const lines = [`${kind} ${n.namespace ? `${n.namespace}/` : ""}${n.name}`];
  if (n.host) lines.push(n.host);
  lines.push(`in ${fmtRps(n.rpsIn)} rps, out ${fmtRps(n.rpsOut)} rps, errors ${fmtPct(n.errorRate)}`);
  if (n.idle) lines.push("no traffic in the window");
  if (n.nacks) lines.push(`${n.nacks} NACKed config type(s)`);
  if (n.stale) lines.push(`${n.stale} config type(s) not synced`);
  if (n.noSidecar) lines.push("no sidecar");
  return lines.join("\n");
}

function renderNode(n, c) {
  const href = nodeHref(n);
  const badges = [];
  if (n.nacks) badges.push(["NACK", "bad"]);
  else if (n.stale) badges.push(["STALE", "warn"]);
  if (n.notRunning) badges.push(["DOWN", "bad"]);
  if (n.noSidecar) badges.push(["no sidecar", "muted"]);
  const badgeSvg = badges
    .map(([t, cls], i) => {
      const w = t.length * 6 + 10;
      return `<g class="nbadge ${cls}" transform="translate(${R - 4},${-R - 6 + i * 15})"><rect width="${w}" height="13" rx="6"/><text x="${w / 2}" y="10">${esc(t)}</text></g>`;
    })
    .join("");
  const cls = ["node", `kind-${n.kind}`, `h-${n.health}`, n.idle ? "idle" : "", n.gateway ? "gateway" : ""].join(" ");
  const body = `<g class="${cls}" data-id="${esc(n.id)}" data-kind="${esc(n.kind)}" data-health="${esc(n.health)}" transform="translate(${c.x},${c.y})">
<title>${esc(nodeTitle(n))}</title>${nodeShape(n)}
<text class="name" y="${R + 15}">${esc(n.name)}</text>
<text class="ns" y="${R + 27}">${esc(n.kind === "service" ? `${n.namespace ? `${n.namespace} · ` : ""}service` : n.namespace || "")}</text>${badgeSvg}</g>`;
  return href ? `<a href="${esc(href)}" class="nlink">${body}</a>` : body;
}

function edgeTitle(e, nodes) {
  const s = nodes.get(e.source);
  const d = nodes.get(e.destination);
  const codes = Object.entries(e.codes || {})
    .map(([c, n]) => `${c}: ${n}`)
    .join(", ");
  const lines = [
    `${s?.name || e.source} → ${d?.name || e.destination} (${e.protocol})`,
    `${fmtRps(e.rps)} ${e.protocol === "tcp" ? "conn" : "req"}/s, ${e.requests} in the window`,
  ];
  if (e.protocol !== "tcp") {
    lines.push(`errors ${fmtPct(e.errorRate)}${codes ? ` (codes ${codes})` : ""}`);
    lines.push(`p50 ${fmtMs(e.p50)}, p99 ${fmtMs(e.p99)}${e.approx ? " (merged edges: p50 weighted mean, p99 max)" : ""}`);
  }
  lines.push(e.mtls === true ? "mutual TLS" : e.mtls === false ? "plaintext" : e.mtls === "partial" ? "partly mutual TLS" : "mTLS unknown (no destination sidecar report)");
  return lines.join("\n");
}

function edgeGeometry(a, b, self) {
  if (self) {
    const d = `M${a.x - 8},${a.y - R} C${a.x - 40},${a.y - 70} ${a.x + 40},${a.y - 70} ${a.x + 8},${a.y - R}`;
    return { d, mid: { x: a.x, y: a.y - 62 } };
  }
  if (b.x > a.x) {
    const x1 = a.x + R + 2;
    const x2 = b.x - R - 6;
    const dx = (x2 - x1) / 2;
    const d = `M${x1},${a.y} C${x1 + dx},${a.y} ${x2 - dx},${b.y} ${x2},${b.y}`;
    return { d, mid: { x: (x1 + x2) / 2, y: (a.y + b.y) / 2 } };
  }
  // Backward or same column: a curve under the nodes.
  const dip = Math.max(a.y, b.y) + ROW_H * 0.7;
  const d = `M${a.x},${a.y + R + 2} C${a.x},${dip} ${b.x},${dip} ${b.x},${b.y + R + 6}`;
  return { d, mid: { x: (a.x + b.x) / 2, y: dip - ROW_H * 0.18 } };
}

function edgeLabel(e) {
  if (e.protocol === "tcp") {
    const bps = e.bytesPerSecond || 0;
    const size = bps > 1e6 ? `${(bps / 1e6).toFixed(1)} MB/s` : bps > 1e3 ? `${(bps / 1e3).toFixed(1)} kB/s` : `${Math.round(bps)} B/s`;
    return [`${fmtRps(e.rps)} conn/s`, `tcp · ${size}`];
  }
  const t = e.approx ? "~" : "";
  return [`${fmtRps(e.rps)} rps · ${fmtPct(e.errorRate)}`, `p50 ${t}${fmtMs(e.p50)} · p99 ${t}${fmtMs(e.p99)}`];
}

export function renderSvg(model, lay, opts) {
  const { nodes, edges } = model;
  const { coords } = lay;
  const labels = [];
  for (const e of edges) {
    const a = coords.get(e.source);
    const b = coords.get(e.destination);
    if (!a || !b) continue;
    const g = edgeGeometry(a, b, e.source === e.destination);
    const h = health(e.errorRate, e.requests);
    const lines = edgeLabel(e);
    const lockW = e.mtls === null ? 0 : 13;
    const w = Math.max(...lines.map((l) => l.length)) * 6.1 + 10 + lockW;
    const speed = e.rps > 0 ? Math.max(0.35, 2.6 / (1 + Math.log10(1 + e.rps * 4))) : 0;
    const flow =
      opts.animate && e.rps > 0
        ? `<path class="flow" d="${g.d}" style="animation-duration:${speed.toFixed(2)}s"/>`
        : "";
    const path = `<path class="line" d="${g.d}" marker-end="url(#arrow-${h})"/>${flow}<path class="hit" d="${g.d}"/>`;
    labels.push({ e, h, lines, path, lockW, x: g.mid.x, y: g.mid.y, w, hgt: 28 });
  }
  // Nudge overlapping labels apart (top to bottom).
  labels.sort((p, q) => p.y - q.y || p.x - q.x);
  for (let i = 0; i < labels.length; i++) {
    for (let j = 0; j < i; j++) {
      const p = labels[j];
      const q = labels[i];
      if (Math.abs(p.x - q.x) < (p.w + q.w) / 2 && Math.abs(p.y - q.y) < (p.hgt + q.hgt) / 2 + 1) {
        q.y = p.y + (p.hgt + q.hgt) / 2 + 2;
      }
    }
  }
  const pathSvg = [];
  const labelSvg = [];
  for (const l of labels) {
    const e = l.e;
    const mt = e.mtls === true ? "true" : e.mtls === false ? "false" : e.mtls === "partial" ? "partial" : "unknown";
    const title = `<title>${esc(edgeTitle(e, nodes))}</title>`;
    const attrs = `data-source="${esc(e.source)}" data-destination="${esc(e.destination)}" data-protocol="${esc(e.protocol)}" data-reported="${esc((e.reported || []).join(" "))}"`;
    pathSvg.push(
      `<g class="edge h-${l.h} ${esc(e.protocol)}" ${attrs} data-rps="${e.rps}" data-error-rate="${e.errorRate}" data-p50="${e.p50 ?? ""}" data-p99="${e.p99 ?? ""}" data-mtls="${mt}">${title}${l.path}</g>`,
    );
    const lockIcon =
      e.mtls === null
        ? ""
        : `<use class="elock ${mt === "true" ? "on" : mt === "partial" ? "partial" : "open"}" href="#${mt === "false" ? "i-unlock" : "i-lock"}" x="${(l.w / 2 - 15).toFixed(1)}" y="-13" width="11" height="12"/>`;
    labelSvg.push(
      `<g class="elabel h-${l.h}" ${attrs} data-mtls="${mt}" transform="translate(${l.x.toFixed(1)},${l.y.toFixed(1)})">${title}<rect x="${(-l.w / 2).toFixed(1)}" y="-14" width="${l.w.toFixed(1)}" height="${l.hgt}" rx="4"/><text class="l1" x="${(-l.lockW / 2).toFixed(1)}" y="-3">${esc(l.lines[0])}</text><text class="l2" y="10">${esc(l.lines[1])}</text>${lockIcon}</g>`,
    );
  }
  const nodeSvg = [...nodes.values()]
    .filter((n) => coords.has(n.id))
    .map((n) => renderNode(n, coords.get(n.id)))
    .join("");
  const markers = ["healthy", "degraded", "failure", "idle"]
    .map(
      (h) =>
        `<marker id="arrow-${h}" class="arrow h-${h}" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z"/></marker>`,
    )
    .join("");
  const idleLine =
    lay.idleTop !== null
      ? `<text class="idle-caption" x="12" y="${lay.idleTop}">idle (no traffic in the window)</text>`
      : "";
  return raw(
    `<svg id="graph-svg" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${lay.width} ${lay.height}" width="${lay.width}" height="${lay.height}" role="img" aria-label="service graph"><defs>${markers}</defs>${idleLine}<g class="edges">${pathSvg.join("")}</g><g class="nodes">${nodeSvg}</g><g class="labels">${labelSvg.join("")}</g></svg>`,
  );
}

export function legend() {
  return html`<div class="legend">
    <span><svg width="16" height="16"><circle cx="8" cy="8" r="6" class="lg-shape"/></svg> workload</span>
    <span><svg width="16" height="16"><path d="M8,1 L15,14 L1,14 Z" class="lg-shape"/></svg> service</span>
    <span><svg width="16" height="16"><polygon points="15,8 11.5,14 4.5,14 1,8 4.5,2 11.5,2" class="lg-shape"/></svg> gateway</span>
    <span><i class="sw healthy"></i> healthy</span>
    <span><i class="sw degraded"></i> errors ≥ 0.1%</span>
    <span><i class="sw failure"></i> errors ≥ 20%</span>
    <span><i class="sw idle"></i> idle</span>
    <span><svg class="lock"><use href="#i-lock"/></svg> mTLS</span>
    <span><svg class="lock partial"><use href="#i-lock"/></svg> partly mTLS</span>
    <span><svg class="lock open"><use href="#i-unlock"/></svg> plaintext</span>
  </div>`;
}
