// Jobs (retrains and batch scoring): the list, and one job with its log, followed while it
// runs.

import { api, enc, request } from "./api.js";
import { badge, fmtTime, h, replace } from "./dom.js";

const KIND = { succeeded: "ok", failed: "bad", cancelled: "warn", running: "ok", queued: "" };

function listView(main) {
  const body = h("tbody");
  replace(main, h("h1", {}, "Jobs"), h("table", { id: "jobs" }, h("thead", {}, h("tr", {},
    ["Job", "Kind", "Deployment", "State", "Trigger", "Started", "Message"].map((t) => h("th", { scope: "col" }, t)))), body));
  return {
    interval_ms: 5000,
    async refresh() {
      const jobs = await api("/jobs?limit=100");
      replace(body, jobs.length ? jobs.map((j) => h("tr", {},
        h("th", { scope: "row" }, h("a", { href: `#/jobs/${j.id}` }, `#${j.id}`)), h("td", {}, j.kind || "retrain"),
        h("td", {}, j.deployment || j.model),
        h("td", {}, badge(j.state, KIND[j.state] || "")), h("td", {}, j.trigger), h("td", {}, fmtTime(j.started_at || j.created_at)),
        h("td", {}, j.message || ""))) : h("tr", {}, h("td", { colspan: 7, className: "muted" }, "No jobs.")));
    },
  };
}

function jobView(main, ctx, id) {
  const head = h("div");
  const message = h("p", { role: "status" });
  const log = h("pre", { className: "log", id: "job-log", tabindex: "0", "aria-label": "Job log" });
  replace(main, h("p", {}, h("a", { href: "#/jobs" }, "← All jobs")), head, message, h("h2", {}, "Log"), log);
  async function cancel() {
    if (!(await ctx.confirmAction(`Cancel job ${id}?`))) return;
    try {
      await api(`/jobs/${enc(id)}/cancel`, { method: "POST" });
      replace(message, "Cancel requested.");
    } catch (error) {
      replace(message, h("span", { className: "error" }, error.message));
    }
  }
  return {
    interval_ms: 3000,
    async refresh() {
      const job = await api(`/jobs/${enc(id)}`);
      const active = job.state === "queued" || job.state === "running";
      replace(head, h("h1", {}, `${job.kind === "batch" ? "Batch scoring" : "Retrain"} job #${job.id} `, badge(job.state, KIND[job.state] || "")),
        h("dl", { className: "kv" }, h("dt", {}, "Model"), h("dd", {}, `${job.model} from v${job.parent_version}`),
          h("dt", {}, "Trigger"), h("dd", {}, job.trigger), h("dt", {}, "Progress"), h("dd", {}, `${Math.round((job.progress || 0) * 100)}%`),
          h("dt", {}, "Message"), h("dd", {}, job.message || "—")),
        ctx.session.can_deploy && active ? h("button", { type: "button", className: "danger", id: "cancel-job", onclick: cancel }, "Cancel job") : null);
      const text = (await request(`/api/v1/jobs/${enc(id)}/logs`)).data;
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      if (log.textContent !== text) {
        log.textContent = text || "(nothing printed yet)";
        if (atEnd) log.scrollTop = log.scrollHeight;
      }
    },
  };
}

export function mount(main, ctx, params) {
  return params.id ? jobView(main, ctx, params.id) : listView(main);
}
