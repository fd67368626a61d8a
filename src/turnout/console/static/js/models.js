// The registry: models, and one model's versions with flavor, metrics, signature and lineage.

import { api, enc } from "./api.js";
import { badge, fmtTime, h, replace } from "./dom.js";

function kv(object) {
  const entries = Object.entries(object || {});
  if (!entries.length) return h("span", { className: "muted" }, "—");
  return h("dl", { className: "kv" }, entries.flatMap(([k, v]) => [h("dt", {}, k),
    h("dd", {}, typeof v === "number" ? String(Math.round(v * 10000) / 10000) : typeof v === "object" ? JSON.stringify(v) : String(v))]));
}

function signature(sig) {
  const inputs = (sig && sig.inputs) || [];
  const names = inputs.map((i) => i.name || i.datatype || "input").slice(0, 8);
  return `${inputs.length} input${inputs.length === 1 ? "" : "s"}${names.length ? `: ${names.join(", ")}${inputs.length > 8 ? ", …" : ""}` : ""}`;
}

function lineage(version) {
  if (!version.parent_version) return h("span", { className: "muted" }, "registered");
  const info = version.lineage || {};
  const parts = [`retrained from v${version.parent_version}`];
  if (info.job !== undefined) parts.push(", by ", h("a", { href: `#/jobs/${encodeURIComponent(info.job)}` }, `job ${info.job}`));
  if (info.trigger) parts.push(`, trigger ${info.trigger}`);
  if (info.data_fingerprint) parts.push(", data ", h("code", { title: String(info.data_fingerprint) }, String(info.data_fingerprint).slice(0, 12)));
  return h("span", {}, parts);
}

function listView(main) {
  const body = h("tbody");
  replace(main, h("h1", {}, "Models"), h("table", { id: "models" },
    h("thead", {}, h("tr", {}, ["Model", "Versions", "Latest", "Created"].map((t) => h("th", { scope: "col" }, t)))), body));
  return {
    interval_ms: 15000,
    async refresh() {
      const models = await api("/models");
      replace(body, models.length ? models.map((m) => h("tr", {},
        h("th", { scope: "row" }, h("a", { href: `#/models/${encodeURIComponent(m.name)}` }, m.name)),
        h("td", {}, String(m.versions)), h("td", {}, m.latest_version ? `v${m.latest_version}` : "—"), h("td", {}, fmtTime(m.created_at))))
        : h("tr", {}, h("td", { colspan: 4, className: "muted" }, "No models registered.")));
    },
  };
}

function modelView(main, name) {
  const body = h("tbody");
  replace(main, h("p", {}, h("a", { href: "#/models" }, "← All models")), h("h1", {}, name),
    h("table", { id: "versions" }, h("thead", {}, h("tr", {},
      ["Version", "Flavor", "Metrics", "Signature", "Lineage", "Registered"].map((t) => h("th", { scope: "col" }, t)))), body));
  return {
    interval_ms: 15000,
    async refresh() {
      const model = await api(`/models/${enc(name)}`);
      replace(body, [...model.version_list].reverse().map((v) => h("tr", {},
        h("th", { scope: "row" }, `v${v.version}`, v.archived_at ? [" ", badge("archived", "warn")] : ""),
        h("td", {}, v.flavor), h("td", {}, kv(v.metrics)), h("td", {}, signature(v.signature)),
        h("td", {}, lineage(v)), h("td", {}, `${fmtTime(v.created_at)} by ${v.created_by}`))));
    },
  };
}

export function mount(main, ctx, params) {
  return params.name ? modelView(main, params.name) : listView(main);
}
