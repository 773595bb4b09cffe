// The services and workloads lists.

import { api, settle } from "../api.js";
import { badge, byKey, empty, fmtPct, fmtRps, html, labelsText, setHTML } from "../util.js";

const GRAPH_WINDOW = 60;

export function fqdn(name, namespace) {
  return `${name}.${namespace}.svc.cluster.local`;
}

// Does a VirtualService/DestinationRule host (as written) name this service? Short names resolve in
// the resource's own namespace, as Istio does.
export function hostMatches(host, svcName, svcNs, resNs) {
  if (!host) return false;
  if (host === "*") return false;
  if (host === svcName) return resNs === svcNs;
  if (host === `${svcName}.${svcNs}` || host.startsWith(`${svcName}.${svcNs}.svc`)) return true;
  if (host.startsWith("*.")) return fqdn(svcName, svcNs).endsWith(host.slice(1));
  return false;
}

export function proxySync(proxies, configVersion) {
  const out = { total: proxies.length, synced: 0, stale: 0, nacks: 0 };
  for (const p of proxies) {
    const all = Object.values(p.sync || {});
    if (Object.keys(p.nacks || {}).length) out.nacks += 1;
    else if (all.length && all.every((v) => v === "SYNCED") && p.configVersion === configVersion) out.synced += 1;
    else out.stale += 1;
  }
  return out;
}

export function syncSummary(s) {
  if (!s.total) return badge("no proxy", "muted");
  return html`${s.synced ? badge(`${s.synced}/${s.total} SYNCED`, "ok") : ""}${s.stale ? badge(`${s.stale} STALE`, "warn") : ""}${s.nacks ? badge(`${s.nacks} NACK`, "bad") : ""}`;
}

function traffic(graph) {
  const byService = new Map();
  const byWorkload = new Map();
  const bump = (m, k, field, rps, errs, reqs) => {
    const t = m.get(k) || { in: 0, out: 0, errors: 0, requests: 0 };
    t[field] += rps;
    if (field === "in") {
      t.errors += errs;
      t.requests += reqs;
    }
    m.set(k, t);
  };
  for (const e of graph?.edges || []) {
    const errs = (e.errorRate || 0) * (e.requests || 0);
    for (const s of e.services || []) bump(byService, s, "in", e.rps, errs, e.requests);
    bump(byWorkload, e.destination, "in", e.rps, errs, e.requests);
    bump(byWorkload, e.source, "out", e.rps, 0, 0);
  }
  return { byService, byWorkload };
}

export const servicesPage = {
  mount(el) {
    setHTML(el, html`<h1>Services</h1><div class="panel" id="services"></div>`);
    return {
      title: "Services",
      async refresh(tick) {
        const d = await settle({
          services: () => api.resources("Service"),
          vs: () => api.resources("VirtualService"),
          dr: () => api.resources("DestinationRule"),
          status: () => tick.status(),
          graph: () => tick.graph(GRAPH_WINDOW),
        });
        if (!d.services) throw new Error(d.errors.services);
        const t = traffic(d.graph);
        const instances = d.status?.instances || [];
        const rows = [...d.services].sort(byKey((s) => `${s.metadata.namespace}/${s.metadata.name}`)).map((s) => {
          const name = s.metadata.name;
          const ns = s.metadata.namespace;
          const vss = (d.vs || []).filter((v) =>
            (v.spec.hosts || []).some((hst) => hostMatches(hst, name, ns, v.metadata.namespace)),
          );
          const drs = (d.dr || []).filter((r) => hostMatches(r.spec.host, name, ns, r.metadata.namespace));
          const sel = s.spec.selector || {};
          const pods = Object.keys(sel).length
            ? instances.filter(
                (i) => i.namespace === ns && Object.entries(sel).every(([k, v]) => (i.labels || {})[k] === v),
              )
            : [];
          const proxies = (d.status?.proxies || []).filter((p) => pods.some((i) => i.instance === p.instance && i.namespace === p.namespace));
          const tr = t.byService.get(fqdn(name, ns));
          const msgs = (s.status?.validationMessages || []).length;
          return html`<tr class="service-row" data-name="${name}" data-namespace="${ns}">
            <td><a href="#/service/${encodeURIComponent(ns)}/${encodeURIComponent(name)}">${name}</a></td><td>${ns}</td>
            <td>${(s.spec.ports || []).map((p) => badge(`${p.name ? `${p.name} ` : ""}${p.port}`, "muted"))}</td>
            <td>${vss.map((v) => badge(v.metadata.name, "info"))}</td>
            <td>${drs.map((r) => badge(`${r.metadata.name}${(r.spec.subsets || []).length ? ` (${r.spec.subsets.length} subset${r.spec.subsets.length === 1 ? "" : "s"})` : ""}`, "info"))}</td>
            <td class="num">${pods.length}</td><td>${syncSummary(proxySync(proxies, d.status?.configVersion))}</td>
            <td class="num">${tr ? fmtRps(tr.in) : "-"}</td><td class="num">${tr && tr.requests ? fmtPct(tr.errors / tr.requests) : "-"}</td>
            <td>${msgs ? badge(`${msgs} message(s)`, "warn") : ""}</td></tr>`;
        });
        setHTML(
          el.querySelector("#services"),
          rows.length
            ? html`<table><thead><tr><th>name</th><th>namespace</th><th>ports</th><th>VirtualServices</th><th>DestinationRules</th>
              <th class="num">pods</th><th>proxies</th><th class="num">req/s in</th><th class="num">errors</th><th></th></tr></thead><tbody>${rows}</tbody></table>`
            : empty("No services."),
        );
      },
    };
  },
};

export const workloadsPage = {
  mount(el) {
    setHTML(el, html`<h1>Workloads</h1><div class="panel" id="workloads"></div>`);
    return {
      title: "Workloads",
      async refresh(tick) {
        const d = await settle({ status: () => tick.status(), graph: () => tick.graph(GRAPH_WINDOW) });
        if (!d.status) throw new Error(d.errors.status);
        const t = traffic(d.graph);
        const groups = new Map();
        for (const i of d.status.instances || []) {
          const k = `${i.namespace}/${i.workload}`;
          const g = groups.get(k) || { namespace: i.namespace, name: i.workload, instances: [], labels: i.labels };
          g.instances.push(i);
          groups.set(k, g);
        }
        const rows = [...groups.values()].sort(byKey((g) => `${g.namespace}/${g.name}`)).map((g) => {
          const proxies = (d.status.proxies || []).filter((p) => p.workload === g.name && p.namespace === g.namespace);
          const kind = g.instances.some((i) => i.gateway) ? "gateway" : g.instances.some((i) => i.sidecar) ? "sidecar" : "no sidecar";
          const running = g.instances.filter((i) => i.state === "Running").length;
          const tr = t.byWorkload.get(`workload:${g.namespace}/${g.name}`);
          return html`<tr class="workload-row" data-name="${g.name}" data-namespace="${g.namespace}">
            <td><a href="#/workload/${encodeURIComponent(g.namespace)}/${encodeURIComponent(g.name)}">${g.name}</a></td><td>${g.namespace}</td>
            <td>${badge(kind, kind === "no sidecar" ? "warn" : "muted")}</td>
            <td>${badge(`${running}/${g.instances.length} running`, running === g.instances.length ? "ok" : "bad")}</td>
            <td>${syncSummary(proxySync(proxies, d.status.configVersion))}</td>
            <td class="muted">${labelsText(g.labels)}</td>
            <td class="num">${tr ? fmtRps(tr.in) : "-"}</td><td class="num">${tr ? fmtRps(tr.out) : "-"}</td>
            <td class="num">${tr && tr.requests ? fmtPct(tr.errors / tr.requests) : "-"}</td></tr>`;
        });
        setHTML(
          el.querySelector("#workloads"),
          rows.length
            ? html`<table><thead><tr><th>workload</th><th>namespace</th><th>proxy</th><th>instances</th><th>sync</th><th>labels</th>
              <th class="num">req/s in</th><th class="num">req/s out</th><th class="num">errors in</th></tr></thead><tbody>${rows}</tbody></table>`
            : empty("No workloads."),
        );
      },
    };
  },
};
