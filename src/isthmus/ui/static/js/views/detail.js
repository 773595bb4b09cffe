// Per-service and per-workload pages: what applies (VirtualServices, DestinationRule and subsets,
// policies), proxies' sync state, live traffic, validation messages, recent traces and access logs.

import { api, settle } from "../api.js";
import { badge, empty, fmtMs, fmtPct, fmtRps, html, labelsText, levelBadge, lock, setHTML, syncBadge } from "../util.js";
import { traceTable } from "./traces.js";

const GRAPH_WINDOW = 60;

function value(v) {
  if (v === null || v === undefined) return html`<span class="muted">-</span>`;
  if (Array.isArray(v)) {
    if (!v.length) return html`<span class="muted">none</span>`;
    if (v.every((x) => typeof x !== "object")) return v.join(", ");
    return html`<ul>${v.map((x) => html`<li>${value(x)}</li>`)}</ul>`;
  }
  if (typeof v === "object") {
    const entries = Object.entries(v);
    if (!entries.length) return html`<span class="muted">none</span>`;
    return html`<dl class="kv">${entries.map(([k, x]) => html`<dt>${k}</dt><dd>${value(x)}</dd>`)}</dl>`;
  }
  return String(v);
}

// Each part in its own box, replaced only when its own content changed (keeps open <details>, scroll).
function fill(root, parts) {
  for (const [id, content] of parts) {
    let box = root.querySelector(`:scope > [data-part="${id}"]`);
    if (!box) {
      box = document.createElement("div");
      box.dataset.part = id;
      root.appendChild(box);
    }
    setHTML(box, content);
  }
}

function section(id, title, body, extra = "") {
  return html`<div class="panel" id="${id}"><h2 style="margin-top:0">${title} ${extra}</h2>${body}</div>`;
}

function svcHref(name, ns) {
  return `#/service/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
}

function wlHref(name, ns) {
  return `#/workload/${encodeURIComponent(ns)}/${encodeURIComponent(name)}`;
}

function nodeName(id) {
  if (id === "unknown") return html`<span class="muted">unknown (outside the mesh)</span>`;
  const m = /^workload:([^/]+)\/(.+)$/.exec(id);
  if (m) return html`<a href="${wlHref(m[2], m[1])}">${m[2]}</a><span class="muted">.${m[1]}</span>`;
  return id.replace(/^service:/, "");
}

function trafficTable(edges, emptyText) {
  if (!edges.length) return empty(emptyText);
  return html`<table class="traffic"><thead><tr><th>source</th><th>destination</th><th class="num">req/s</th><th class="num">errors</th>
    <th class="num">p50</th><th class="num">p99</th><th>mTLS</th></tr></thead><tbody>${edges.map(
      (e) => html`<tr class="traffic-row" data-source="${e.source}" data-destination="${e.destination}" data-rps="${e.rps}">
        <td>${nodeName(e.source)}</td><td>${nodeName(e.destination)}</td><td class="num">${fmtRps(e.rps)}</td>
        <td class="num">${e.protocol === "tcp" ? "-" : fmtPct(e.errorRate)}</td><td class="num">${fmtMs(e.p50)}</td>
        <td class="num">${fmtMs(e.p99)}</td><td>${lock(e.mtls)}</td></tr>`,
    )}</tbody></table>`;
}

function virtualServices(vss, gateways) {
  const mesh = vss.length
    ? vss.map(
        (vs) => html`<div class="vs" data-name="${vs.name}" data-namespace="${vs.namespace}">
          <h3>${badge("VirtualService", "info")} ${vs.namespace}/${vs.name}
            <span class="muted">hosts ${(vs.hosts || []).join(", ")} · gateways ${(vs.gateways || []).join(", ")}</span></h3>
          ${(vs.httpRules || vs.rules || []).map(
            (r) => html`<div class="rule ${r.catchAll ? "catch" : ""}">
              <b>rule ${r.index}</b>${r.ports?.length ? html` <span class="muted">ports ${r.ports.join(", ")}</span>` : ""}:
              ${(r.matches || []).join(" or ")} →
              ${(r.destinations || []).map(
                (d, i) => html`${i ? ", " : ""}<code>${d.host.split(".")[0]}${d.subset ? `/${d.subset}` : ""}${d.port ? `:${d.port}` : ""}</code>${d.weight !== undefined ? html` <span class="muted">${d.weight}%</span>` : ""}${d.thisService === false ? html` <span class="muted">(elsewhere)</span>` : ""}`,
              )}
              ${r.redirect ? html` redirect ${value(r.redirect)}` : ""}
              ${r.fault ? html` ${badge("fault", "warn")}` : ""}${r.mirror ? html` ${badge("mirror", "muted")}` : ""}
              <span class="muted"> · timeout ${r.timeout || "-"}${r.retries ? ` · retries ${r.retries.attempts}` : ""}</span>
              ${r.reachesThisPod === false ? html` ${badge("does not reach this pod", "muted")}` : ""}
            </div>`,
          )}
          ${vs.tcpRules?.length || vs.tlsRules?.length ? html`<div class="muted">${value({ tcp: vs.tcpRules, tls: vs.tlsRules })}</div>` : ""}
        </div>`,
      )
    : empty("No VirtualService for this host in the mesh: default routes apply.");
  const gw = (gateways || []).length
    ? html`<h3>Exposed by gateways</h3><table><thead><tr><th>gateway</th><th>VirtualService</th><th>hosts</th><th>routes</th><th>addresses</th></tr></thead>
      <tbody>${gateways.map(
        (g) => html`<tr class="gw-row"><td>${g.gateway}</td><td>${g.virtualService}</td><td>${(g.hosts || []).join(", ")}</td>
          <td>${(g.routes || []).map((r) => html`<code>${r}</code><br>`)}</td><td>${(g.addresses || []).join(", ")}</td></tr>`,
      )}</tbody></table>`
    : "";
  return html`${mesh}${gw}`;
}

function destinationRule(svc) {
  const dr = svc.destinationRule;
  const body = dr
    ? html`<div class="dr" data-name="${dr.name}" data-namespace="${dr.namespace}">
        <h3>${badge("DestinationRule", "info")} ${dr.namespace}/${dr.name} <span class="muted">host ${dr.host}</span></h3>
        ${(dr.subsets || []).length
          ? html`<table><thead><tr><th>subset</th><th>labels</th><th>pods</th></tr></thead><tbody>${dr.subsets.map(
              (s) => html`<tr class="subset-row" data-subset="${s.name}"><td><b>${s.name}</b>${s.matchesThisPod ? html` ${badge("this pod", "ok")}` : ""}</td>
                <td class="muted">${labelsText(s.labels)}</td><td>${(s.pods || []).join(", ") || html`${badge("no pods", "warn")}`}</td></tr>`,
            )}</tbody></table>`
          : html`<p class="muted">no subsets</p>`}
      </div>`
    : empty("No DestinationRule: Istio's defaults apply.");
  const tp = svc.trafficPolicy || {};
  const policies = Object.entries(tp).map(
    ([port, bySubset]) => html`<h3>Traffic policy, port ${port}</h3>${Object.entries(bySubset).map(
      ([subset, pol]) => html`<details ${subset === "default" ? "open" : ""}><summary>${subset === "default" ? "service default" : `subset ${subset}`}</summary>${value(pol)}</details>`,
    )}`,
  );
  return html`${body}${policies}`;
}

function proxiesTable(proxies, configVersion) {
  if (!proxies.length) return empty("No proxy: these instances run without a sidecar.");
  return html`<table class="proxies"><thead><tr><th>proxy</th><th>kind</th><th>state</th><th>config version</th><th>sync</th><th>NACKs</th></tr></thead>
    <tbody>${proxies.map((p) => {
      const nacks = Object.entries(p.nacks || {});
      const current = p.configVersion === configVersion;
      return html`<tr class="proxy-row" data-instance="${p.instance}" data-config-version="${p.configVersion ?? ""}"
          data-synced="${current && Object.values(p.sync || {}).every((v) => v === "SYNCED") ? "true" : "false"}">
        <td><code>${p.instance}.${p.namespace}</code><br><span class="muted">${p.ip}</span></td><td>${p.kind}</td>
        <td>${badge(p.state, p.state === "Running" ? "ok" : "bad")}</td>
        <td>${p.configVersion ?? "-"} ${current ? badge("current", "ok") : badge(`mesh at ${configVersion}`, "warn")}</td>
        <td>${Object.entries(p.sync || {}).map(([t, s]) => html`<span title="${t}">${t} ${syncBadge(s)}</span> `)}</td>
        <td>${nacks.length ? nacks.map(([t, n]) => html`<div>${badge(`${t} NACK`, "bad")} <span class="mono">${(n?.message || JSON.stringify(n)).slice(-400)}</span></div>`) : html`<span class="muted">none</span>`}</td>
      </tr>`;
    })}</tbody></table>`;
}

function messagesTable(msgs) {
  if (!msgs.length) return empty("No analyzer messages.");
  return html`<table class="messages"><tbody>${msgs.map(
    (m) => html`<tr class="msg msg-${m.level}" data-code="${m.code}"><td>${levelBadge(m.level)}</td><td><code>${m.code}</code> ${m.name}</td>
      <td>${m.resource}${m.origin ? html` <span class="muted">${m.origin}</span>` : ""}</td><td>${m.message}</td></tr>`,
  )}</tbody></table>`;
}

function policies(pod) {
  const pa = pod.peerAuthentication || {};
  const aps = pod.authorizationPolicies || [];
  const ras = pod.requestAuthentications || [];
  return html`<dl class="kv">
    <dt>mTLS (PeerAuthentication)</dt><dd>${badge(pa.mode || "-", pa.mode === "STRICT" ? "ok" : pa.mode === "DISABLE" ? "bad" : "muted")}
      ${Object.entries(pa.ports || {}).map(([p, m]) => html`<span class="muted">port ${p}: ${m}</span> `)}
      ${(pa.policies || []).join(", ")} <span class="muted">${pa.note || ""}</span></dd>
    <dt>AuthorizationPolicies</dt><dd>${aps.length
      ? aps.map(
          (a) => html`<div class="authz" data-name="${a.name}">${badge(a.action, a.action === "DENY" ? "bad" : a.action === "ALLOW" ? "ok" : "muted")}
            <b>${a.namespace}/${a.name}</b> <span class="muted">${a.rules} rule(s) · ${a.scope}${a.dryRun ? " · dry run" : ""}</span>
            ${a.note ? html` ${badge(a.note, "warn")}` : ""}</div>`,
        )
      : html`<span class="muted">none: every request is allowed</span>`}</dd>
    <dt>RequestAuthentications</dt><dd>${ras.length ? ras.map((r) => html`<div><b>${r.namespace}/${r.name}</b> <span class="muted">issuers ${(r.issuers || []).join(", ")}</span></div>`) : html`<span class="muted">none</span>`}</dd>
    ${pod.sidecar ? html`<dt>Sidecar resource</dt><dd>${pod.sidecar.namespace}/${pod.sidecar.name} <span class="muted">egress ${(pod.sidecar.egressHosts || []).join(", ")}</span></dd>` : ""}
    ${pod.outboundTrafficPolicy ? html`<dt>outbound traffic</dt><dd>${pod.outboundTrafficPolicy}</dd>` : ""}
  </dl>`;
}

// The service name a workload's spans carry: Istio's tracing service name APP_LABEL_AND_NAMESPACE
// (its app label, else its workload name, then the namespace).
export function traceServiceName(labels, workload, namespace) {
  return `${(labels || {}).app || workload}.${namespace}`;
}

function relatedMessages(analysis, refs) {
  return (analysis?.messages || []).filter((m) => refs.has(m.resource));
}

function recentTraces(summaries, serviceNames) {
  const want = new Set(serviceNames);
  return (summaries || []).filter((t) => (t.services || []).some((s) => want.has(s))).slice(0, 10);
}

// --- service page ------------------------------------------------------------------------------------

export const servicePage = {
  mount(el, [namespace, name]) {
    setHTML(
      el,
      html`<div class="crumbs"><a href="#/services">Services</a> / ${namespace}</div>
      <h1>${badge("service", "info")} ${name} <span class="muted" id="svc-host"></span></h1>
      <div id="svc-error"></div>
      <div id="svc-body"></div>`,
    );
    return {
      title: `${name} service`,
      async refresh(tick) {
        const d = await settle({
          describe: () => api.describe("service", name, namespace),
          status: () => tick.status(),
          graph: () => tick.graph(GRAPH_WINDOW),
          analysis: () => tick.analysis(),
          traces: () => api.traces({ limit: 200 }),
        });
        if (!d.describe) {
          setHTML(el.querySelector("#svc-error"), html`<div class="panel">${empty(d.errors.describe)}</div>`);
          return;
        }
        setHTML(el.querySelector("#svc-error"), "");
        const svc = d.describe.service;
        const status = d.status || { proxies: [], instances: [] };
        setHTML(el.querySelector("#svc-host"), `${svc.hostname}`);
        const podNames = new Set(d.describe.pods.map((p) => p.name));
        const instances = (status.instances || []).filter((i) => i.namespace === svc.namespace && podNames.has(i.instance));
        const proxies = (status.proxies || []).filter((p) => p.namespace === svc.namespace && podNames.has(p.instance));
        const edges = (d.graph?.edges || []).filter((e) => (e.services || []).includes(svc.hostname));
        const refs = new Set([
          `Service ${svc.namespace}/${svc.name}`,
          ...(svc.virtualServices || []).map((v) => `VirtualService ${v.namespace}/${v.name}`),
          ...(svc.gateways || []).map((g) => `VirtualService ${g.virtualService}`),
          ...(svc.destinationRule ? [`DestinationRule ${svc.destinationRule.namespace}/${svc.destinationRule.name}`] : []),
        ]);
        const msgs = relatedMessages(d.analysis, refs);
        const traceNames = [...new Set(instances.map((i) => traceServiceName(i.labels, i.workload, i.namespace)))];
        const traces = recentTraces(d.traces, traceNames);
        const pods = html`<table class="pods"><thead><tr><th>pod</th><th>workload</th><th>ip</th><th>labels</th><th>subsets</th><th>mTLS mode</th><th>ready</th></tr></thead>
          <tbody>${d.describe.pods.map((p) => {
            const inst = instances.find((i) => i.instance === p.name);
            return html`<tr><td><code>${p.name}</code></td><td>${inst ? html`<a href="${wlHref(inst.workload, svc.namespace)}">${inst.workload}</a>` : "-"}</td>
              <td>${p.ip}</td><td class="muted">${labelsText(p.labels)}</td><td>${(p.subsets || []).map((s) => badge(s, "info"))}</td>
              <td>${badge(p.mtls, p.mtls === "STRICT" ? "ok" : "muted")}${p.sidecar ? "" : badge("no sidecar", "warn")}
                ${(p.authorizationPolicies || []).map((a) => badge(`${a.action} ${a.name}`, a.action === "DENY" ? "bad" : "muted"))}</td>
              <td>${p.ready ? badge("ready", "ok") : badge("not ready", "bad")}</td></tr>`;
          })}</tbody></table>`;
        fill(el.querySelector("#svc-body"), [
          [
            "summary",
            html`<div class="panel"><dl class="kv">
            <dt>ports</dt><dd>${(svc.ports || []).map((p) => badge(`${p.name || ""} ${p.port}/${p.protocol}${p.targetPort && p.targetPort !== p.port ? ` → ${p.targetPort}` : ""}`, "muted"))}</dd>
            <dt>source</dt><dd>${svc.source}</dd><dt>config version</dt><dd>${d.describe.configVersion}</dd>
            ${(svc.defaultRoutes || []).length ? html`<dt>default routes</dt><dd>${svc.defaultRoutes.map((r) => html`<div class="muted">port ${r.port}: timeout ${r.timeout}, retries ${r.retries?.attempts ?? "-"} (${r.retries?.retryOn || ""})</div>`)}</dd>` : ""}
          </dl></div>`,
          ],
          ["traffic", section("svc-traffic", "Traffic in", trafficTable(edges, "No requests to this service in the last minute."), html`<span class="muted">(last ${GRAPH_WINDOW} s)</span>`)],
          [
            "config",
            html`<div class="row">
            ${section("svc-vs", "VirtualServices", virtualServices(svc.virtualServices || [], svc.gateways))}
            ${section("svc-dr", "DestinationRule", destinationRule(svc))}
          </div>`,
          ],
          ["pods", section("svc-pods", "Pods", pods)],
          ["proxies", section("svc-proxies", "Proxies' sync state", proxiesTable(proxies, status.configVersion))],
          ["messages", section("svc-messages", "Validation messages", messagesTable(msgs))],
          [
            "traces",
            section(
              "svc-traces",
              "Recent traces",
              traces.length ? traceTable(traces) : empty("No trace through this service yet."),
              html`<span class="muted">(through ${traceNames.join(", ")})</span>`,
            ),
          ],
        ]);
      },
    };
  },
};

// --- workload page -----------------------------------------------------------------------------------

export const workloadPage = {
  mount(el, [namespace, name]) {
    setHTML(
      el,
      html`<div class="crumbs"><a href="#/workloads">Workloads</a> / ${namespace}</div>
      <h1>${badge("workload", "info")} ${name}</h1>
      <div id="wl-error"></div><div id="wl-body"></div>
      ${section("wl-logs", "Access log", html`<div id="wl-log-note"></div><pre class="logs" id="wl-log-text"></pre>`, html`<span class="muted">(last 30 lines of its proxies)</span>`)}`,
    );
    return {
      title: `${name} workload`,
      async refresh(tick) {
        const d = await settle({
          describe: () => api.describe("workload", name, namespace),
          status: () => tick.status(),
          graph: () => tick.graph(GRAPH_WINDOW),
          analysis: () => tick.analysis(),
          traces: async () => {
            const st = await tick.status().catch(() => null);
            const inst = (st?.instances || []).find((i) => i.workload === name && i.namespace === namespace);
            return api.traces({ service: traceServiceName(inst?.labels, name, namespace), limit: 10 });
          },
          logs: () => api.logs(name, namespace, 30),
        });
        if (!d.describe) {
          setHTML(el.querySelector("#wl-error"), html`<div class="panel">${empty(d.errors.describe)}</div>`);
          return;
        }
        setHTML(el.querySelector("#wl-error"), "");
        const pod = d.describe.pod;
        const status = d.status || { proxies: [], instances: [] };
        const proxies = (status.proxies || []).filter((p) => p.workload === name && p.namespace === namespace);
        const instances = (status.instances || []).filter((i) => i.workload === name && i.namespace === namespace);
        const id = `workload:${namespace}/${name}`;
        const edgesIn = (d.graph?.edges || []).filter((e) => e.destination === id);
        const edgesOut = (d.graph?.edges || []).filter((e) => e.source === id);
        const services = d.describe.services || [];
        const refs = new Set();
        for (const s of services) {
          refs.add(`Service ${s.namespace}/${s.name}`);
          for (const v of s.virtualServices || []) refs.add(`VirtualService ${v.namespace}/${v.name}`);
          if (s.destinationRule) refs.add(`DestinationRule ${s.destinationRule.namespace}/${s.destinationRule.name}`);
        }
        for (const a of pod.authorizationPolicies || []) refs.add(`AuthorizationPolicy ${a.namespace}/${a.name}`);
        for (const p of pod.peerAuthentication?.policies || []) refs.add(`PeerAuthentication ${p}`);
        const msgs = relatedMessages(d.analysis, refs);
        const svcBlocks = services.length
          ? services.map(
              (s) => html`<div class="svc-block" data-service="${s.name}">
                <h3><a href="${svcHref(s.name, s.namespace)}">${s.name}</a> <span class="muted">${s.hostname}</span>
                  ${s.destinationRule ? html`${badge(`DestinationRule ${s.destinationRule.name}`, "info")} ${(s.destinationRule.podSubsets || []).map((x) => badge(`subset ${x}`, "ok"))}` : badge("no DestinationRule", "muted")}</h3>
                ${virtualServices(s.virtualServices || [], s.gateways)}
              </div>`,
            )
          : empty((d.describe.warnings || []).join("; ") || "No Service selects this workload.");
        fill(el.querySelector("#wl-body"), [
          [
            "summary",
            html`<div class="panel"><dl class="kv">
            <dt>instances</dt><dd>${instances.map((i) => html`<code>${i.instance}</code> ${badge(i.state, i.state === "Running" ? "ok" : "bad")} `)}</dd>
            <dt>proxy</dt><dd>${pod.proxy}${pod.warning ? html` ${badge(pod.warning, "warn")}` : ""}</dd>
            <dt>identity</dt><dd><code>${pod.identity}</code></dd>
            <dt>labels</dt><dd class="muted">${labelsText(pod.labels)}</dd>
            <dt>ports</dt><dd>${(pod.ports || []).map((p) => badge(`${p.port}/${p.protocol}${p.services?.length ? ` (${p.services.join(", ")})` : ""}`, "muted"))}</dd>
          </dl></div>`,
          ],
          ["proxies", section("wl-proxies", "Proxies' sync state", proxiesTable(proxies, status.configVersion))],
          [
            "traffic",
            html`<div class="row">
            ${section("wl-in", "Traffic in", trafficTable(edgesIn, "No inbound requests in the last minute."))}
            ${section("wl-out", "Traffic out", trafficTable(edgesOut, "No outbound requests in the last minute."))}
          </div>`,
          ],
          ["services", section("wl-services", "Services, VirtualServices and DestinationRules", svcBlocks)],
          ["policies", section("wl-policies", "Policies", policies(pod))],
          ["messages", section("wl-messages", "Validation messages", messagesTable(msgs))],
          [
            "traces",
            section(
              "wl-traces",
              "Recent traces",
              d.traces?.length ? traceTable(d.traces) : empty("No trace through this workload yet."),
              html`<span class="muted">(through ${traceServiceName(pod.labels, name, namespace)}, every version)</span>`,
            ),
          ],
        ]);
        // Proxies that keep their metrics themselves (the default; ISTHMUS_PROXY_METRICS: "false" turns
        // it off) send only failed and gRPC requests' entries: say so, or their quiet log reads as no
        // traffic.
        const inProxy = proxies.filter((p) => p.metrics?.pipeline === "proxy").map((p) => p.instance);
        setHTML(
          el.querySelector("#wl-log-note"),
          inProxy.length
            ? html`<p class="muted" id="wl-log-in-proxy">${inProxy.join(", ")} keep their metrics in the proxy: only failed requests (status &gt;= 400 or a response flag) and gRPC requests are logged (ISTHMUS_PROXY_METRICS: "false" logs every request).</p>`
            : "",
        );
        setHTML(el.querySelector("#wl-log-text"), d.logs ?? d.errors.logs ?? "");
      },
    };
  },
};
