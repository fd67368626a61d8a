// One deployment: its revision as a traffic split, live charts per version and role, the
// chosen window's numbers (accuracy with its 95% interval, drift), its rollout, and its
// revision history with rollback.

import { api, enc } from "./api.js";
import { LineChart } from "./charts.js";
import { badge, fmtMs, fmtNumber, fmtPercent, fmtTime, h, replace } from "./dom.js";
import { splitBar } from "./overview.js";
import { rolloutSection } from "./rollout.js";

const WINDOWS = ["15m", "1h", "24h", "7d", "all"];
const KEEP_POINTS = 360;

function key(group) {
  return `v${group.version} ${group.role}`;
}

// Rates between two samples of the gateways' counters (which only grow while workers live).
export function rates(before, after) {
  const seconds = (after.t - before.t) / 1000;
  const perSecond = {}, problems = {}, latency = {};
  if (seconds <= 0) return { perSecond, problems, latency };
  const earlier = new Map(before.traffic.map((g) => [key(g), g]));
  for (const group of after.traffic) {
    const name = key(group);
    const old = earlier.get(name) || { requests: 0, errors: 0 };
    const requests = Math.max(0, group.requests - old.requests);
    const errors = Math.max(0, group.errors - old.errors);
    perSecond[name] = requests / seconds;
    if (group.role === "fallback") problems[`${name}s`] = requests / seconds;
    else problems[`${name} errors`] = errors / seconds;
    if (group.latency_p50_ms !== null) latency[`${name} p50`] = group.latency_p50_ms;
    if (group.latency_p99_ms !== null) latency[`${name} p99`] = group.latency_p99_ms;
  }
  return { perSecond, problems, latency };
}

function revisionSummary(config) {
  const parts = [`champion v${config.champion}`];
  for (const [v, pct] of Object.entries(config.challengers || {})) parts.push(`challenger v${v} ${pct}%`);
  for (const [v, pct] of Object.entries(config.shadows || {})) parts.push(`shadow v${v} ${pct}%`);
  if (config.failover) parts.push(`failover v${config.failover}`);
  if (config.standby) parts.push(`standby v${config.standby}`);
  if (config.has_fallback) parts.push(`fallback ${JSON.stringify(config.fallback)}`);
  return parts.join(", ");
}

function rolesList(config) {
  const items = [];
  for (const [v, pct] of Object.entries(config.shadows || {})) items.push(h("li", {}, badge("shadow"), ` v${v}: ${pct}% of requests mirrored, answers never returned`));
  if (config.failover) items.push(h("li", {}, badge("failover"), ` v${config.failover} answers when the champion fails`));
  if (config.standby) items.push(h("li", {}, badge("standby"), ` v${config.standby} kept loaded for instant rollback`));
  items.push(h("li", {}, badge("fallback"), config.has_fallback ? ` ${JSON.stringify(config.fallback)}` : " none (a 503 when no model answers)"));
  if (config.timeout_ms) items.push(h("li", {}, badge("deadline"), ` ${config.timeout_ms} ms`));
  return h("ul", { className: "roles" }, items);
}

function accuracyText(group) {
  const metric = group.performance && group.performance.accuracy;
  if (metric && typeof metric === "object") {
    return `${fmtPercent(metric.value)} (95% ${fmtPercent(metric.ci_low)}–${fmtPercent(metric.ci_high)}, n=${group.actuals})`;
  }
  return group.accuracy === null || group.accuracy === undefined ? "—" : fmtPercent(group.accuracy);
}

// Each graded group's accuracy and its interval, in percent, for the accuracy chart.
export function accuracyOf(metrics) {
  const values = {};
  for (const group of metrics.groups || []) {
    const metric = group.performance && group.performance.accuracy;
    if (!metric || typeof metric !== "object") continue;
    values[key(group)] = metric.value * 100;
    values[`${key(group)} 95% low`] = metric.ci_low * 100;
    values[`${key(group)} 95% high`] = metric.ci_high * 100;
  }
  return values;
}

function windowTable(metrics) {
  const drift = metrics.drift || {};
  const rows = (metrics.groups || []).map((g) => {
    const d = drift[String(g.version)] || {};
    const drifted = d.drifted && d.drifted.length ? badge(`drift: ${d.drifted.join(", ")}`, "bad")
      : d.baseline ? badge("no drift", "ok") : h("span", { className: "muted" }, "no baseline");
    return h("tr", {}, h("th", { scope: "row" }, key(g)),
      h("td", { className: "num" }, fmtNumber(g.requests, 0)), h("td", { className: "num" }, fmtPercent(g.error_rate)),
      h("td", { className: "num" }, fmtPercent(g.fallback_rate)), h("td", { className: "num" }, fmtMs(g.latency_p50_ms)),
      h("td", { className: "num" }, fmtMs(g.latency_p99_ms)), h("td", {}, accuracyText(g)), h("td", {}, drifted));
  });
  const heads = ["Version and role", "Requests", "Errors", "Fallbacks", "p50", "p99", "Accuracy", "Drift"];
  return h("table", { id: "window-table" },
    h("thead", {}, h("tr", {}, heads.map((t, i) => h("th", { scope: "col", className: i >= 1 && i <= 5 ? "num" : "" }, t)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: heads.length, className: "muted" }, "No logged predictions in this window."))));
}

const LEVEL_KIND = { major: "bad", moderate: "warn", none: "ok", minor: "ok" };
const TOP_FEATURES = 15;

// Drift per feature against the registration baseline: PSI as a bar, with its test.
function driftBars(metrics) {
  const sections = Object.entries(metrics.drift || {}).filter(([, d]) => d.baseline).map(([version, d]) => {
    const features = Object.entries(d.features || {});
    if (d.prediction) features.push(["(prediction)", d.prediction]);
    features.sort(([, a], [, b]) => (b.psi ?? -1) - (a.psi ?? -1));
    const rows = features.slice(0, TOP_FEATURES).map(([name, f]) => {
      const bar = h("span", { className: `bar ${LEVEL_KIND[f.level] || ""}`.trim() });
      bar.style.width = `${Math.min(100, ((f.psi ?? 0) / 0.5) * 100)}%`; // PSI 0.5 fills it
      return h("tr", {}, h("th", { scope: "row" }, name),
        h("td", {}, h("div", { className: "bar-track", role: "img", "aria-label": `PSI ${fmtNumber(f.psi, 3)}` }, bar)),
        h("td", { className: "num" }, fmtNumber(f.psi, 3)), h("td", {}, f.test || "—"),
        h("td", { className: "num" }, f.p_value === null || f.p_value === undefined ? "—" : f.p_value.toExponential(1)),
        h("td", {}, badge(f.level || "—", LEVEL_KIND[f.level] || "")));
    });
    return h("div", { className: "drift" }, h("h3", {}, `v${version}: ${d.rows} logged rows against its training data`),
      h("table", { className: "drift-table" }, h("thead", {}, h("tr", {},
        ["Feature", "Drift (a full bar is PSI 0.5)", "PSI", "Test", "p-value", "Level"].map((t, i) => h("th", { scope: "col", className: i === 2 || i === 4 ? "num" : "" }, t)))),
        h("tbody", {}, rows)),
      features.length > TOP_FEATURES ? h("p", { className: "muted" }, `${features.length - TOP_FEATURES} more features with less drift.`) : null);
  });
  return sections.length ? sections : h("p", { className: "muted" }, "No version in this window has a training baseline to compare with.");
}

export function mount(main, ctx, params) {
  const name = params.name;
  let windowText = params.query.get("window") || "1h";
  const samples = [];
  let polls = 0;
  const header = h("div", {});
  const split = h("div", { id: "split" });
  const charts = {
    requests: new LineChart(h("div"), { title: "Requests per second", unit: "req/s", id: "chart-requests" }),
    latency: new LineChart(h("div"), { title: "Latency p50 / p99 (since the gateways started)", unit: "ms", id: "chart-latency" }),
    problems: new LineChart(h("div"), { title: "Errors and fallbacks per second", unit: "/s", id: "chart-problems" }),
  };
  const accuracyChart = new LineChart(h("div"), { title: "Accuracy over the window, with its 95% interval", unit: "%", id: "chart-accuracy",
    waiting: "Waiting for actuals: accuracy is drawn once graded answers arrive." });
  const accuracyPoints = [];
  const windowSelect = h("select", { id: "window", onchange: () => {
    windowText = windowSelect.value;
    accuracyPoints.length = 0; // another window: another series
    refreshWindow().catch((error) => ctx.setStatus(error.message));
  } },
    WINDOWS.map((w) => h("option", { value: w, selected: w === windowText }, w)));
  const windowBody = h("div", {}, h("p", { className: "muted" }, "Loading…"));
  const history = h("div", {}, h("p", { className: "muted" }, "Loading…"));
  const historyMessage = h("p", { role: "status", id: "history-message" });
  const rollout = rolloutSection(name, ctx, () => refresh());

  replace(main,
    h("p", {}, h("a", { href: "#/" }, "← All deployments")),
    header,
    h("section", { "aria-labelledby": "split-title" }, h("h2", { id: "split-title" }, "Current revision"), split),
    rollout.section,
    h("section", { "aria-labelledby": "live-title" }, h("h2", { id: "live-title" }, "Live traffic"),
      h("div", { className: "charts" }, charts.requests.container, charts.latency.container, charts.problems.container)),
    h("section", { "aria-labelledby": "window-title" }, h("h2", { id: "window-title" }, "Over a window"),
      h("div", { className: "toolbar" }, h("label", { for: "window" }, "Window"), windowSelect),
      h("div", { className: "charts" }, accuracyChart.container), windowBody),
    h("section", { "aria-labelledby": "history-title" }, h("h2", { id: "history-title" }, "Revision history"), historyMessage, history));

  async function rollback(revision) {
    const question = `Roll ${name} back to revision ${revision}? Its routing becomes a new revision at once.`;
    if (!(await ctx.confirmAction(question))) return;
    try {
      const applied = await api(`/deployments/${enc(name)}/rollback`, { method: "POST", body: { to_revision: revision } });
      replace(historyMessage, `Rolled back: revision ${applied.revision} routes as revision ${revision} did.`);
    } catch (error) {
      replace(historyMessage, h("span", { className: "error" }, error.message));
    }
    await refresh();
  }

  let drawnHistory = null;
  let drawnHeader = null;

  function renderHistory(revisions, active) {
    const key = `${revisions.length}:${active}`;
    if (key === drawnHistory) return; // unchanged: keep the buttons (and keyboard focus) as they are
    drawnHistory = key;
    const rows = [...revisions].reverse().map((r) => h("tr", { "data-revision": r.revision },
      h("th", { scope: "row" }, String(r.revision), r.revision === active ? " (active)" : ""),
      h("td", {}, fmtTime(r.created_at)), h("td", {}, r.created_by), h("td", {}, r.reason || "—"),
      h("td", {}, revisionSummary(r.config)),
      ctx.session.can_deploy ? h("td", {}, r.revision === active ? "" : h("button", { type: "button", className: "secondary",
        "aria-label": `Roll back to revision ${r.revision}`, "data-rollback": r.revision, onclick: () => rollback(r.revision) }, "Roll back")) : null));
    const heads = ["Revision", "When", "Who", "Why", "Routing"];
    if (ctx.session.can_deploy) heads.push("Action");
    replace(history, h("table", { id: "history" },
      h("thead", {}, h("tr", {}, heads.map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows)));
  }

  async function refreshWindow() {
    const metrics = await api(`/deployments/${enc(name)}/metrics?window=${encodeURIComponent(windowText)}`);
    replace(windowBody, windowTable(metrics), h("h3", {}, "Drift per feature"), driftBars(metrics));
    const graded = accuracyOf(metrics);
    if (Object.keys(graded).length) {
      accuracyPoints.push([Date.now() / 1000, graded]);
      if (accuracyPoints.length > KEEP_POINTS) accuracyPoints.shift();
      accuracyChart.update(accuracyPoints);
    }
  }

  async function refresh() {
    const [shown, revisions] = await Promise.all([api(`/deployments/${enc(name)}`), api(`/deployments/${enc(name)}/history`)]);
    const headerKey = JSON.stringify([shown.config, shown.revision, (shown.workers || []).length]);
    if (headerKey !== drawnHeader) {
      drawnHeader = headerKey;
      replace(header, h("h1", {}, name),
        h("dl", { className: "kv" }, h("dt", {}, "Model"), h("dd", {}, h("a", { href: `#/models/${encodeURIComponent(shown.model)}` }, shown.model)),
          h("dt", {}, "Champion"), h("dd", {}, `v${shown.champion}`), h("dt", {}, "Revision"), h("dd", { id: "active-revision" }, String(shown.revision)),
          h("dt", {}, "Workers serving it"), h("dd", {}, String((shown.workers || []).length))));
      replace(split, splitBar(shown.config, "split"), rolesList(shown.config));
    }
    samples.push({ t: Date.now(), traffic: shown.traffic || [] });
    if (samples.length > KEEP_POINTS + 1) samples.shift();
    const points = { requests: [], latency: [], problems: [] };
    for (let i = 1; i < samples.length; i++) {
      const r = rates(samples[i - 1], samples[i]);
      const t = samples[i].t / 1000;
      points.requests.push([t, r.perSecond]);
      points.latency.push([t, r.latency]);
      points.problems.push([t, r.problems]);
    }
    for (const [name_, chart] of Object.entries(charts)) chart.update(points[name_]);
    renderHistory(revisions, shown.revision);
    polls += 1; // the window's numbers read the prediction log: every third look is enough
    await Promise.all([rollout.refresh(), polls % 3 === 1 ? refreshWindow() : null]);
  }

  return {
    refresh,
    interval_ms: 5000,
    destroy: () => [...Object.values(charts), accuracyChart].forEach((c) => c.destroy()),
  };
}
