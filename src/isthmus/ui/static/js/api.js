// The control plane's JSON API, as the dashboard reads it (same origin, relative to /ui/).

const TIMEOUT_MS = 8000;

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

async function call(path, params, asText) {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), TIMEOUT_MS);
  let resp;
  try {
    resp = await fetch(url, { signal: ctl.signal, cache: "no-store" });
  } catch (e) {
    throw new ApiError(`${path}: ${e.name === "AbortError" ? "timed out" : "control plane unreachable"}`, 0);
  } finally {
    clearTimeout(timer);
  }
  const body = await resp.text();
  if (!resp.ok) {
    let msg = body;
    try {
      const data = JSON.parse(body);
      msg = data.error || (data.errors || []).join("; ") || body;
    } catch (_) {
      /* not JSON */
    }
    throw new ApiError(`${path}: ${resp.status} ${msg}`.trim(), resp.status);
  }
  if (asText) return body;
  return JSON.parse(body);
}

export const api = {
  graph: (window) => call("/api/graph", { window }),
  status: () => call("/api/status"),
  resources: (kind, namespace, name) => call("/api/resources", { kind, namespace, name }),
  describe: (kind, name, namespace) => call("/api/describe", { kind, name, namespace }),
  traces: (params) => call("/api/traces", params),
  trace: (id) => call(`/api/traces/${encodeURIComponent(id)}`),
  logs: (workload, namespace, tail) =>
    call("/api/logs", { workload, namespace, tail, prefix: 1 }, true),
  // The analyzer endpoint may be missing (older control plane) or failing: callers get null then.
  analysis: async () => {
    try {
      return await call("/api/analysis");
    } catch (e) {
      return { unavailable: e.status === 404 ? "not served by this control plane" : e.message, messages: [] };
    }
  },
};

// Run every loader, keeping each one's result or error: a page renders what it could get.
export async function settle(loaders) {
  const keys = Object.keys(loaders);
  const results = await Promise.allSettled(keys.map((k) => loaders[k]()));
  const out = { errors: {} };
  results.forEach((r, i) => {
    if (r.status === "fulfilled") out[keys[i]] = r.value;
    else {
      out[keys[i]] = null;
      out.errors[keys[i]] = r.reason?.message || String(r.reason);
    }
  });
  return out;
}
