// Every deployment, a page at a time (filtered by the server), with its live numbers.

import { api, enc, request } from "./api.js";
import { badge, fmtMs, fmtNumber, fmtPercent, h, inBatches, replace, sparkline } from "./dom.js";

const PAGE_SIZE = 25;
const DRIFT_EVERY = 6; // refreshes between drift checks (they read the prediction log)
const SPARK_POINTS = 30;

function remember(series, name, value) {
  const values = series.get(name) || [];
  values.push(value);
  if (values.length > SPARK_POINTS) values.shift();
  series.set(name, values);
  return values;
}

// The champion's accuracy over the window, when actuals have graded some of its answers.
export function championAccuracy(metrics) {
  const group = (metrics.groups || []).find((g) => g.role === "champion" && g.accuracy !== null && g.accuracy !== undefined);
  return group ? group.accuracy : null;
}

export function splitBar(config, className = "mini-split") {
  const challengers = Object.entries(config.challengers || {});
  const shared = challengers.reduce((sum, [, pct]) => sum + pct, 0);
  const parts = [["champion", `v${config.champion}`, Math.max(0, 100 - shared)]];
  for (const [version, pct] of challengers) parts.push(["challenger", `v${version}`, pct]);
  return h(
    "div",
    { className, role: "img", "aria-label": parts.map(([role, v, pct]) => `${v} ${role} ${pct}%`).join(", ") },
    parts.map(([role, v, pct]) => {
      const part = h("span", { className: role, title: `${v} ${role} ${pct}%` },
        className === "split" ? `${v} ${role} ${pct}%` : "");
      part.style.flex = `0 0 ${pct}%`; // a style property, which the page's CSP allows
      return part;
    }),
  );
}

export function summarize(traffic) {
  let requests = 0, errors = 0, fallbacks = 0, p99 = null;
  for (const group of traffic || []) {
    if (group.role === "shadow") continue;
    requests += group.requests;
    errors += group.errors;
    if (group.role === "fallback") fallbacks += group.requests;
    if (group.latency_p99_ms !== null && (p99 === null || group.latency_p99_ms > p99)) p99 = group.latency_p99_ms;
  }
  return { requests, errors, fallbacks, p99 };
}

export async function latestRollout(name) {
  const events = await api(`/deployments/${enc(name)}/rollout/history?limit=1`);
  if (!events.length) return null;
  return api(`/deployments/${enc(name)}/rollout`);
}

export function rolloutBadge(rollout) {
  if (!rollout) return "—";
  if (rollout.state === "waiting_approval") return badge(`v${rollout.version}: waiting for approval`, "warn");
  if (rollout.state === "running") return badge(`v${rollout.version}: ${rollout.step}`, "ok");
  return h("span", { className: "muted" }, `last: v${rollout.version} ${rollout.state}`);
}

export function mount(main, ctx, params) {
  const prefix = params.query.get("prefix") || "";
  const page = Math.max(1, Number.parseInt(params.query.get("page") || "1", 10) || 1);
  const previous = new Map(); // name -> {t, requests}
  let refreshes = 0;
  const drift = new Map();
  const traffic = new Map(); // name -> recent requests/min
  const accuracy = new Map(); // name -> recent champion accuracy (1h)
  let drawnPage = null;

  const filter = h("input", { id: "filter", type: "search", value: prefix, placeholder: "name prefix" });
  const form = h("form", { className: "toolbar", role: "search", onsubmit: (event) => {
    event.preventDefault();
    location.hash = `#/?prefix=${encodeURIComponent(filter.value.trim())}`;
  } }, h("label", { for: "filter" }, "Filter deployments"), filter, h("button", { type: "submit" }, "Filter"));
  const body = h("tbody");
  const summary = h("p", { className: "muted", id: "count", "aria-live": "polite" });
  const pager = h("div", { className: "pager" });
  const headers = ["Deployment", "Model", "Champion", "Traffic split", "Req/min", "Errors", "Fallbacks",
    "p99", "Drift, accuracy (1h)", "Breakers", "Rollout"];
  replace(main,
    h("h1", {}, "Deployments"),
    form,
    summary,
    h("table", { id: "deployments" },
      h("caption", { className: "muted" }, "Numbers are live: requests since the gateways started, refreshed every 10 s."),
      h("thead", {}, h("tr", {}, headers.map((title, i) => h("th", { scope: "col", className: i >= 4 && i <= 7 ? "num" : "" }, title)))),
      body),
    pager);

  function pageLink(label, number, disabled) {
    const query = `prefix=${encodeURIComponent(prefix)}&page=${number}`;
    return h("button", { type: "button", className: "secondary", disabled,
      onclick: () => { location.hash = `#/?${query}`; } }, label);
  }

  async function details(row, name) {
    const [shown, rollout] = await Promise.all([api(`/deployments/${enc(name)}`), latestRollout(name)]);
    const totals = summarize(shown.traffic);
    const now = Date.now();
    const before = previous.get(name);
    previous.set(name, { t: now, requests: totals.requests });
    const perMin = before && now > before.t ? ((totals.requests - before.requests) * 60000) / (now - before.t) : null;
    const open = (shown.breakers || []).filter((b) => b.state !== "closed");
    const cells = row.cells;
    if (perMin === null) {
      replace(cells[4], "…");
    } else {
      const rate = Math.max(0, perMin);
      replace(cells[4], fmtNumber(rate), " ", sparkline(remember(traffic, name, rate), "requests per minute, recent"));
    }
    replace(cells[5], totals.requests ? fmtPercent(totals.errors / totals.requests) : "—");
    replace(cells[6], totals.requests ? fmtPercent(totals.fallbacks / totals.requests) : "—");
    replace(cells[7], fmtMs(totals.p99));
    replace(cells[9], open.length ? badge(open.map((b) => `v${b.version} ${b.state}`).join(", "), "bad") : badge("closed", "ok"));
    replace(cells[10], rolloutBadge(rollout));
    return () => driftCell(cells[8], name);
  }

  // Drift reads the prediction log: checked after every row has its live numbers, and
  // only every few refreshes.
  async function driftCell(cell, name) {
    if (refreshes % DRIFT_EVERY === 1 || !drift.has(name)) {
      const metrics = await api(`/deployments/${enc(name)}/metrics?window=1h`);
      drift.set(name, Object.values(metrics.drift || {}).some((d) => d.drifted && d.drifted.length));
      const score = championAccuracy(metrics);
      if (score !== null) remember(accuracy, name, score);
    }
    const scores = accuracy.get(name) || [];
    replace(cell, drift.get(name) ? badge("drift", "bad") : badge("none", "ok"),
      scores.length ? [" ", fmtPercent(scores[scores.length - 1]), " ", sparkline(scores, "champion accuracy, recent")] : "");
  }

  function drawPage(deployments, total, offset) {
    const rows = deployments.map((d) => {
      const link = h("a", { href: `#/deployments/${encodeURIComponent(d.name)}` }, d.name);
      return h("tr", { "data-name": d.name },
        h("th", { scope: "row" }, link), h("td", {}, d.model), h("td", {}, `v${d.champion}`),
        h("td", {}, splitBar(d.config)),
        ...Array.from({ length: 7 }, (_, i) => h("td", { className: i < 4 ? "num" : "" }, "…")));
    });
    const old = new Map([...body.rows].map((row) => [row.dataset.name, row]));
    for (const row of rows) { // keep the last numbers until new ones arrive
      const before = old.get(row.dataset.name);
      if (before) for (let i = 4; i < 11; i++) replace(row.cells[i], ...before.cells[i].childNodes);
    }
    replace(body, rows);
    const first = total ? offset + 1 : 0;
    const starting = prefix ? ` starting with “${prefix}”` : "";
    replace(summary, total ? `${first}–${offset + rows.length} of ${total.toLocaleString("en")} deployment${total === 1 ? "" : "s"}${starting}` : `No deployments${starting}`);
    replace(pager, pageLink("Previous page", page - 1, page <= 1), ` Page ${page} of ${Math.max(1, Math.ceil(total / PAGE_SIZE))} `,
      pageLink("Next page", page + 1, offset + PAGE_SIZE >= total));
  }

  async function refresh() {
    refreshes += 1;
    const offset = (page - 1) * PAGE_SIZE;
    const answer = await request(`/api/v1/deployments?limit=${PAGE_SIZE}&offset=${offset}&prefix=${encodeURIComponent(prefix)}`);
    const total = Number(answer.headers.get("x-total-count") || answer.data.length);
    const pageKey = JSON.stringify([total, answer.data.map((d) => [d.name, d.revision])]);
    if (pageKey !== drawnPage) { // redrawn only when the page changed, so keyboard focus stays put
      drawnPage = pageKey;
      drawPage(answer.data, total, offset);
    }
    const rows = [...body.rows].map((row) => [row, row.dataset.name]);
    const looked = await inBatches(rows.map(([row, name]) => () => details(row, name)), 4);
    const drifts = await inBatches(looked.filter((r) => typeof r === "function"), 2);
    const failures = [...looked, ...drifts].filter((r) => r instanceof Error);
    if (failures.length) throw failures[0];
  }

  return { refresh, interval_ms: 10000 };
}
