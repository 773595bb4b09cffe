// Small helpers: escaping HTML templates, formatting figures, health classes.

class Raw {
  constructor(s) {
    this.s = s;
  }
  toString() {
    return this.s;
  }
}

const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ESC[c]);
}

export function raw(s) {
  return new Raw(String(s));
}

function render(v) {
  if (v instanceof Raw) return v.s;
  if (Array.isArray(v)) return v.map(render).join("");
  if (v === null || v === undefined || v === false) return "";
  return esc(v);
}

// html`<p>${value}</p>`: every interpolated value is escaped unless it is html`` output or raw().
export function html(strings, ...values) {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1];
  return new Raw(out);
}

// Replace an element's content only when it changed (keeps scroll, selection and focus otherwise).
export function setHTML(el, content) {
  if (!el) return;
  const s = render(content);
  if (el.__html !== s) {
    el.innerHTML = s;
    el.__html = s;
  }
}

export function fmtRps(rps) {
  if (rps === null || rps === undefined) return "-";
  if (rps === 0) return "0";
  if (rps < 0.01) return "<0.01";
  if (rps < 10) return rps.toFixed(2);
  if (rps < 100) return rps.toFixed(1);
  return Math.round(rps).toString();
}

export function fmtPct(rate) {
  if (rate === null || rate === undefined) return "-";
  const p = rate * 100;
  if (p === 0) return "0%";
  if (p < 0.1) return "<0.1%";
  if (p < 10) return `${p.toFixed(1)}%`;
  return `${Math.round(p)}%`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "-";
  if (ms < 1) return "<1ms";
  if (ms < 1000) return `${Math.round(ms)}ms`;
  return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)}s`;
}

export function fmtUs(us) {
  return fmtMs(us / 1000);
}

export function fmtTime(epochMs) {
  const d = new Date(epochMs);
  return d.toLocaleTimeString([], { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

export function ago(epochMs) {
  const s = Math.max(0, Math.round((Date.now() - epochMs) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  return `${Math.floor(s / 3600)}h ago`;
}

// Kiali's default edge/node health thresholds on the error rate (5xx, no response, gRPC errors).
export const DEGRADED = 0.001;
export const FAILURE = 0.2;

export function health(errorRate, requests) {
  if (!requests) return "idle";
  if (errorRate >= FAILURE) return "failure";
  if (errorRate >= DEGRADED) return "degraded";
  return "healthy";
}

export function lock(on, title) {
  if (on === true) return html`<svg class="lock" role="img" aria-label="mTLS"><title>${title || "mutual TLS"}</title><use href="#i-lock"/></svg>`;
  if (on === "partial")
    return html`<svg class="lock partial" role="img" aria-label="partial mTLS"><title>${title || "partly mutual TLS"}</title><use href="#i-lock"/></svg>`;
  if (on === false) return html`<svg class="lock open" role="img" aria-label="plaintext"><title>${title || "plaintext"}</title><use href="#i-unlock"/></svg>`;
  return "";
}

export function hue(name) {
  let h = 0;
  for (const c of String(name)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return h % 360;
}

export function byKey(fn) {
  return (a, b) => {
    const ka = fn(a);
    const kb = fn(b);
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  };
}

export function badge(text, cls = "") {
  return html`<span class="badge ${cls}">${text}</span>`;
}

export function syncBadge(state) {
  const cls = state === "SYNCED" ? "ok" : state === "STALE" ? "warn" : "muted";
  return badge(state, cls);
}

export function levelBadge(level) {
  const cls = level === "Error" ? "bad" : level === "Warning" ? "warn" : "muted";
  return badge(level, cls);
}

export function labelsText(labels) {
  return Object.entries(labels || {})
    .sort()
    .map(([k, v]) => `${k}=${v}`)
    .join(", ");
}

export function empty(text) {
  return html`<p class="empty">${text}</p>`;
}
