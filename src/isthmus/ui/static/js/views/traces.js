// Traces: the list of recent traces (from the built-in Zipkin collector) and one trace's waterfall.

import { api } from "../api.js";
import { badge, empty, esc, fmtTime, fmtUs, html, hue, setHTML } from "../util.js";

function chip(service) {
  return html`<span class="svc-chip" style="background:hsl(${hue(service)},55%,55%)"></span>`;
}

export function traceTable(summaries) {
  return html`<table class="traces"><thead><tr><th>start</th><th>root</th><th class="num">duration</th><th class="num">spans</th><th>services</th><th></th></tr></thead>
    <tbody>${summaries.map(
      (t) => html`<tr class="trace-row" data-trace-id="${t.traceId}">
        <td><a href="#/trace/${encodeURIComponent(t.traceId)}">${fmtTime(t.start / 1000)}</a></td>
        <td><b>${t.rootService}</b> <span class="muted">${t.rootName}</span></td>
        <td class="num">${fmtUs(t.durationUs)}</td><td class="num">${t.spanCount}</td>
        <td>${(t.services || []).map((s) => html`<span class="badge muted">${chip(s)}${s}</span>`)}</td>
        <td>${t.error ? badge("error", "bad") : ""}</td></tr>`,
    )}</tbody></table>`;
}

export const tracesPage = {
  mount(el, _params, query, shell) {
    const opts = { service: query.get("service") || "", limit: Number(query.get("limit") || 50) };
    setHTML(
      el,
      html`<div class="toolbar"><h1 style="margin:0 10px 0 0">Traces</h1>
        <label>service <select id="trace-service"><option value="">all</option></select></label>
        <label>min duration <input id="trace-min" type="number" min="0" step="1" style="width:70px" placeholder="ms"></label>
        <span class="muted" id="trace-count"></span></div>
        <div class="panel" id="trace-list"></div>`,
    );
    const sel = el.querySelector("#trace-service");
    const min = el.querySelector("#trace-min");
    let known = [];
    sel.addEventListener("change", () => {
      opts.service = sel.value;
      shell.refreshNow();
    });
    min.addEventListener("change", () => shell.refreshNow());
    return {
      title: "Traces",
      async refresh() {
        const list = await api.traces({ service: opts.service, limit: opts.limit, minDuration: min.value });
        const all = new Set(known);
        for (const t of list) for (const s of t.services || []) all.add(s);
        if (opts.service) all.add(opts.service);
        const names = [...all].sort();
        if (names.join() !== known.join()) {
          known = names;
          sel.innerHTML = `<option value="">all</option>${names
            .map((n) => `<option value="${esc(n)}" ${n === opts.service ? "selected" : ""}>${esc(n)}</option>`)
            .join("")}`;
        }
        setHTML(el.querySelector("#trace-count"), `${list.length} newest`);
        setHTML(el.querySelector("#trace-list"), list.length ? traceTable(list) : empty("No traces yet. Proxies make spans only where tracing is configured (as in Istio): set MeshConfig defaultConfig.tracing (e.g. sampling: 100) to send them here, or name a provider in a Telemetry resource; then send some requests through the mesh."));
      },
    };
  },
};

// Parent/child order: each span after its parent, siblings by start time (client before server).
function ordered(spans) {
  const byId = new Map();
  for (const s of spans) {
    if (!byId.has(s.id)) byId.set(s.id, []);
    byId.get(s.id).push(s);
  }
  const children = new Map();
  const roots = [];
  for (const s of spans) {
    // A SERVER span sharing its id with the CLIENT span (Zipkin shared spans) hangs under that client.
    const sameIdClient = s.kind === "SERVER" && (byId.get(s.id) || []).some((o) => o !== s && o.kind === "CLIENT");
    const parent = sameIdClient ? `${s.id}/CLIENT` : s.parentId && byId.has(s.parentId) ? s.parentId : null;
    if (!parent) roots.push(s);
    else {
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(s);
    }
  }
  const out = [];
  const order = (a, b) => (a.timestamp || 0) - (b.timestamp || 0) || (a.kind === "CLIENT" ? -1 : 1);
  const seen = new Set();
  const walk = (s, depth) => {
    if (seen.has(s)) return;
    seen.add(s);
    out.push({ span: s, depth });
    const kids = [
      ...(s.kind === "CLIENT" ? children.get(`${s.id}/CLIENT`) || [] : []),
      ...(children.get(s.id) || []).filter((k) => !(s.kind === "CLIENT" && k.kind === "SERVER" && k.id === s.id)),
    ].sort(order);
    for (const k of kids) walk(k, depth + 1);
  };
  for (const r of roots.sort(order)) walk(r, 0);
  for (const s of spans) if (!seen.has(s)) walk(s, 0);
  return out;
}

// The proxy that reported a span: node_id is "kind~ip~instance.namespace~domain".
function instanceOf(s) {
  const parts = String(s.tags?.node_id || "").split("~");
  return parts.length === 4 ? parts[2] : "";
}

function spanError(s) {
  const tags = s.tags || {};
  const code = Number(tags["http.status_code"] || 0);
  return "error" in tags || code >= 500;
}

export const tracePage = {
  mount(el, [traceId]) {
    setHTML(
      el,
      html`<div class="crumbs"><a href="#/traces">Traces</a></div>
      <h1>Trace <code>${traceId}</code></h1><div id="trace-summary"></div>
      <div class="panel"><div class="waterfall" id="waterfall"></div></div>`,
    );
    const open = new Set();
    let last = null;
    const wf = el.querySelector("#waterfall");
    wf.addEventListener("click", (ev) => {
      const row = ev.target.closest(".span-row");
      if (!row || ev.target.closest(".tags")) return;
      const key = row.dataset.key;
      if (open.has(key)) open.delete(key);
      else open.add(key);
      if (last) draw(last);
    });
    const draw = (data) => {
      const spans = data.spans || [];
      if (!spans.length) {
        setHTML(wf, empty("This trace has no spans."));
        return;
      }
      const start = Math.min(...spans.map((s) => s.timestamp || Infinity));
      const end = Math.max(...spans.map((s) => (s.timestamp || 0) + (s.duration || 0)));
      const total = Math.max(1, end - start);
      const rows = ordered(spans);
      const services = [...new Set(spans.map((s) => s.localEndpoint?.serviceName).filter(Boolean))];
      const root = rows[0]?.span || {};
      const tags = root.tags || {};
      setHTML(
        el.querySelector("#trace-summary"),
        html`<div class="panel"><dl class="kv">
          <dt>duration</dt><dd>${fmtUs(total)}</dd><dt>spans</dt><dd id="span-count">${spans.length}</dd>
          <dt>services</dt><dd>${services.map((s) => html`<span class="badge muted trace-service" data-service="${s}">${chip(s)}${s}</span>`)}</dd>
          <dt>request</dt><dd><code>${tags["http.method"] || ""} ${tags["http.url"] || root.name || ""}</code> → ${tags["http.status_code"] || "-"}</dd>
          <dt>x-request-id</dt><dd><code>${tags["guid:x-request-id"] || "-"}</code></dd>
          <dt>started</dt><dd>${fmtTime(start / 1000)}</dd>
        </dl></div>`,
      );
      const body = rows.map(({ span: s, depth }) => {
        const svc = s.localEndpoint?.serviceName || "?";
        const inst = instanceOf(s);
        const rev = s.tags?.["istio.canonical_revision"];
        const key = `${s.id}/${s.kind || ""}`;
        const left = (((s.timestamp || start) - start) / total) * 100;
        const width = Math.max(0.3, ((s.duration || 0) / total) * 100);
        const t = s.tags || {};
        return html`<div class="span-row ${open.has(key) ? "open" : ""}" data-key="${key}" data-service="${svc}" data-instance="${inst}" data-kind="${s.kind || ""}"
            data-span-id="${s.id}" data-parent-id="${s.parentId || ""}" data-status="${t["http.status_code"] || ""}">
          <div class="who" style="padding-left:${depth * 14}px" title="${s.name || ""}">${chip(svc)}<span class="svc">${svc}</span>
            ${inst ? html`<span class="muted">${inst.split(".")[0]}${rev && rev !== "latest" ? ` · ${rev}` : ""}</span>` : ""}
            <span class="muted">${s.kind === "CLIENT" ? "→ " : s.kind === "SERVER" ? "⇢ " : ""}${(s.name || "").replace(/\.svc\.cluster\.local/, "")}</span></div>
          <div class="track"><div class="bar ${spanError(s) ? "err" : ""}" style="left:${left.toFixed(2)}%;width:${width.toFixed(2)}%;background:hsl(${hue(svc)},55%,55%)"></div></div>
          <div class="dur">${fmtUs(s.duration || 0)}</div>
          ${open.has(key)
            ? html`<div class="tags"><table>${Object.entries(t)
                .sort()
                .map(([k, v]) => html`<tr><td class="muted">${k}</td><td>${v}</td></tr>`)}
                <tr><td class="muted">kind</td><td>${s.kind || "-"}</td></tr><tr><td class="muted">span id</td><td>${s.id} (parent ${s.parentId || "none"})</td></tr></table></div>`
            : ""}
        </div>`;
      });
      setHTML(wf, body);
    };
    return {
      title: `Trace ${traceId.slice(0, 8)}`,
      // Late spans may still arrive for a few seconds; after that the trace does not change.
      interval: 3000,
      async refresh() {
        try {
          last = await api.trace(traceId);
        } catch (e) {
          if (e.status === 404) {
            setHTML(wf, empty("No such trace (it may have been evicted from the collector)."));
            return;
          }
          throw e;
        }
        draw(last);
      },
    };
  },
};
