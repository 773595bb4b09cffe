// Config validation: analyzer messages (istioctl analyze codes), files the store rejected, and
// resources a generator had to drop.

import { settle } from "../api.js";
import { badge, empty, html, levelBadge, setHTML } from "../util.js";

const ORDER = { Error: 0, Warning: 1, Info: 2 };

export const validationPage = {
  mount(el) {
    setHTML(
      el,
      html`<h1>Config validation</h1>
      <p class="muted">What the analyzers say about the running config (as <code>isthmus analyze</code>), config files the
      store rejected, and resources the generators had to drop. Fix a resource and this page clears by itself.</p>
      <div class="panel" id="analysis"></div>
      <div class="panel" id="config-errors"></div>
      <div class="panel" id="generation-errors"></div>`,
    );
    return {
      title: "Validation",
      async refresh(tick) {
        const d = await settle({ analysis: () => tick.analysis(), status: () => tick.status() });
        const a = d.analysis || { messages: [] };
        const msgs = [...(a.messages || [])].sort(
          (x, y) => (ORDER[x.level] ?? 3) - (ORDER[y.level] ?? 3) || (x.resource < y.resource ? -1 : 1),
        );
        const counts = ["Error", "Warning", "Info"]
          .map((l) => [l, msgs.filter((m) => m.level === l).length])
          .filter(([, n]) => n);
        setHTML(
          el.querySelector("#analysis"),
          html`<h2 style="margin-top:0">Analyzer messages ${counts.map(([l, n]) => html`${badge(`${n} ${l}`, l === "Error" ? "bad" : l === "Warning" ? "warn" : "muted")} `)}
            ${a.version ? html`<span class="muted">config version ${a.version}</span>` : ""}</h2>
          ${a.unavailable ? html`<p class="muted">analysis unavailable: ${a.unavailable}</p>` : ""}
          ${msgs.length
            ? html`<table class="messages"><thead><tr><th>level</th><th>code</th><th>resource</th><th>origin</th><th>message</th></tr></thead><tbody>${msgs.map(
                (m) => html`<tr class="msg msg-${m.level}" data-code="${m.code}" data-resource="${m.resource}">
                  <td>${levelBadge(m.level)}</td>
                  <td>${m.code.startsWith("IST")
                    ? html`<a href="https://istio.io/latest/docs/reference/config/analysis/${m.code.toLowerCase()}/" target="_blank" rel="noopener"><code>${m.code}</code></a>`
                    : html`<code>${m.code}</code>`} <span class="muted">${m.name}</span></td>
                  <td>${m.resource}</td><td class="muted">${m.origin || ""}</td><td>${m.message}</td></tr>`,
              )}</tbody></table>`
            : empty("No analyzer messages: the config looks right.")}`,
        );
        const st = d.status;
        const cfg = Object.entries(st?.configErrors || {});
        setHTML(
          el.querySelector("#config-errors"),
          html`<h2 style="margin-top:0">Rejected config files ${cfg.length ? badge(String(cfg.length), "bad") : ""}</h2>
          ${!st
            ? empty(`status unavailable: ${d.errors.status}`)
            : cfg.length
              ? html`<table><tbody>${cfg.map(
                  ([src, errs]) => html`<tr class="config-error"><td><code>${src}</code></td><td>${errs.map((e) => html`<div>${e}</div>`)}</td></tr>`,
                )}</tbody></table>`
              : empty("Every config file was accepted.")}`,
        );
        const gen = Object.entries(st?.generationErrors || {});
        setHTML(
          el.querySelector("#generation-errors"),
          html`<h2 style="margin-top:0">Dropped by the generators ${gen.length ? badge(String(gen.length), "bad") : ""}</h2>
          ${gen.length
            ? html`<table><tbody>${gen.map(([what, msg]) => html`<tr class="generation-error"><td><code>${what}</code></td><td>${msg}</td></tr>`)}</tbody></table>`
            : empty("Every resource was translated.")}`,
        );
      },
    };
  },
};
