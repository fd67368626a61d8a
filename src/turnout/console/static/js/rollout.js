// A deployment's rollout: its plan as steps (the current one marked), each gate's verdict and
// evidence, and Approve / Abort for those whose role allows them.

import { api, enc } from "./api.js";
import { LineChart } from "./charts.js";
import { badge, fmtTime, h, replace } from "./dom.js";
import { latestRollout } from "./overview.js";

const ACTIVE = new Set(["running", "waiting_approval"]);

function stepItems(rollout) {
  const at = rollout.steps.indexOf(rollout.step);
  const finished = rollout.state === "succeeded";
  return rollout.steps.map((step, i) => {
    const done = finished || i < at;
    const current = !finished && i === at;
    return h("li", { className: done ? "done" : "", "aria-current": current ? "step" : null },
      step, done ? " ✓" : "", current ? ` (${rollout.state.replace("_", " ")})` : "");
  });
}

// A gate's thresholds: {name: {value, max | min, ok}}, as gates report them.
function isChecks(value) {
  const entries = Object.values(value);
  return entries.length > 0 && entries.every((c) => c && typeof c === "object" && "value" in c && ("max" in c || "min" in c));
}

function checksTable(checks) {
  return h("table", { className: "checks" },
    h("thead", {}, h("tr", {}, ["Check", "Value", "Limit", ""].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, Object.entries(checks).map(([name, c]) => h("tr", {},
      h("th", { scope: "row" }, name.replaceAll("_", " ")), h("td", { className: "num" }, shown(c.value)),
      h("td", { className: "num" }, "max" in c ? `≤ ${shown(c.max)}` : `≥ ${shown(c.min)}`),
      h("td", {}, c.ok === null || c.ok === undefined ? badge("not enough data", "warn") : c.ok ? badge("ok", "ok") : badge("breached", "bad"))))));
}

function shown(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "number") return String(Number.isInteger(value) ? value : Number(value.toPrecision(4)));
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

// What one version did in a role, as gates report it, in a line.
function groupLine(g) {
  const parts = [`v${g.version} ${g.role}: ${shown(g.requests)} requests`, `${shown(g.errors)} errors`];
  if (g.fallbacks) parts.push(`${shown(g.fallbacks)} fallbacks`);
  if (g.latency_p99_ms !== null && g.latency_p99_ms !== undefined) parts.push(`p99 ${shown(g.latency_p99_ms)} ms`);
  if (g.actuals) parts.push(`accuracy ${shown(g.accuracy)} on ${shown(g.actuals)} actuals`);
  return parts.join(", ");
}

function evidence(value, depth = 0) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return shown(value);
  if (isChecks(value)) return checksTable(value);
  if ("role" in value && "requests" in value && "version" in value) return groupLine(value);
  if (depth >= 2) return shown(value);
  return h("dl", { className: "kv" }, Object.entries(value).flatMap(([key, v]) => [
    h("dt", {}, key.replaceAll("_", " ")),
    h("dd", {}, evidence(v, depth + 1)),
  ]));
}

function verdictRows(verdicts) {
  return Object.entries(verdicts || {}).map(([gate, verdict]) => {
    const outcome = verdict ? verdict.outcome : null;
    const kind = outcome === "pass" ? "ok" : outcome === "fail" ? "bad" : "warn";
    return h("tr", {}, h("th", { scope: "row" }, gate), h("td", {}, badge(String(outcome ?? "—"), kind)),
      h("td", {}, verdict && verdict.reason ? h("p", {}, verdict.reason) : null,
        evidence(verdict ? verdict.evidence ?? {} : {})));
  });
}

// What happened to the rollout, newest first: steps passed, waits, approvals, aborts.
function eventList(events) {
  if (!events.length) return null;
  const rows = [...events].reverse().slice(0, 50).map((e) => {
    const detail = e.detail || {};
    const note = detail.reason || (detail.by ? `by ${detail.by}` : "") || detail.outcome || "";
    return h("tr", {}, h("td", {}, fmtTime(e.at)), h("td", {}, e.step), h("td", {}, e.kind), h("td", {}, String(note)));
  });
  return h("details", { id: "rollout-events" }, h("summary", {}, `Rollout events (${events.length})`),
    h("table", {}, h("thead", {}, h("tr", {}, ["When", "Step", "Event", "Detail"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, rows)));
}

// One look of a challenge step's sequential test: the challenger's effect (challenger minus
// champion) with its always-valid interval against no difference, and the always-valid
// p-value against alpha, the boundary it must cross. Null outside a challenge step.
export function testLook(rollout) {
  const verdict = (rollout.verdicts || {})[rollout.step];
  const evidence = verdict && verdict.evidence;
  if (!String(rollout.step).startsWith("challenge") || !evidence || !evidence.test) return null;
  const test = evidence.test;
  const effect = { "no difference": 0 };
  if (test.effect !== null && test.effect !== undefined) {
    Object.assign(effect, { effect: test.effect, "effect low": test.ci_low, "effect high": test.ci_high });
  }
  const p = { alpha: evidence.alpha };
  if (test.p_value !== null && test.p_value !== undefined) p["p-value"] = test.p_value;
  return { at: verdict.at, step: rollout.step, t: Date.parse(verdict.at) / 1000, effect, p };
}

export function rolloutSection(name, ctx, onChange) {
  const section = h("section", { id: "rollout", "aria-labelledby": "rollout-title" },
    h("h2", { id: "rollout-title" }, "Rollout"));
  const content = h("div", {}, h("p", { className: "muted" }, "Loading…"));
  const message = h("p", { role: "status", id: "rollout-message" });
  const testBox = h("div", { className: "charts", id: "test-charts", hidden: true });
  const effectChart = new LineChart(h("div"), { title: "Challenger minus champion, with its always-valid interval", unit: "", id: "chart-effect",
    waiting: "Drawn from the second look of the sequential test." });
  const pChart = new LineChart(h("div"), { title: "Always-valid p-value against alpha", unit: "", id: "chart-p-value",
    waiting: "Drawn from the second look of the sequential test." });
  testBox.append(effectChart.container, pChart.container);
  let looks = [];
  section.append(content, message);

  function follow(rollout) {
    const look = rollout ? testLook(rollout) : null;
    if (!look) return;
    if (looks.length && looks[looks.length - 1].step !== look.step) looks = []; // a new step
    if (!looks.length || looks[looks.length - 1].at !== look.at) looks.push(look);
    testBox.hidden = false;
    effectChart.update(looks.map((l) => [l.t, l.effect]));
    pChart.update(looks.map((l) => [l.t, l.p]));
  }

  async function act(verb, body, question) {
    if (!(await ctx.confirmAction(question))) return;
    try {
      const after = await api(`/deployments/${enc(name)}/rollout/${verb}`, { method: "POST", body });
      replace(message, `Rollout ${verb === "approve" ? "approved" : "aborted"}: now ${after.state.replace("_", " ")} at ${after.step}.`);
    } catch (error) {
      replace(message, h("span", { className: "error" }, error.message));
    }
    await onChange();
  }

  let drawn = null; // what is on screen: redrawn only when it changed, so focus stays put

  async function refresh() {
    const rollout = await latestRollout(name);
    follow(rollout);
    const key = JSON.stringify(rollout && [rollout.id, rollout.state, rollout.step, rollout.verdicts, (rollout.events || []).length]);
    if (key === drawn) return;
    drawn = key;
    if (!rollout) {
      replace(content, h("p", { className: "muted" }, "No rollout yet."));
      return;
    }
    const buttons = [];
    if (ctx.session.can_deploy && ACTIVE.has(rollout.state)) {
      if (rollout.state === "waiting_approval") {
        buttons.push(h("button", { type: "button", id: "approve",
          onclick: () => act("approve", undefined, `Approve v${rollout.version} of ${name} for promotion?`) }, "Approve"));
      }
      buttons.push(h("button", { type: "button", id: "abort", className: "danger",
        onclick: () => act("abort", { reason: `aborted from the console by ${ctx.session.name}` },
          `Abort the rollout of v${rollout.version}? Live traffic goes back to the champion at once.`) }, "Abort"));
    }
    const wasOpen = Boolean(content.querySelector("#rollout-events[open]"));
    replace(content,
      h("p", {}, `Version v${rollout.version}, started by ${rollout.created_by} at ${fmtTime(rollout.created_at)}: `,
        h("strong", { id: "rollout-state" }, rollout.state.replace("_", " ")),
        rollout.reason ? ` — ${rollout.reason}` : ""),
      h("ol", { className: "steps", "aria-label": "Plan steps" }, stepItems(rollout)),
      buttons.length ? h("div", { className: "toolbar" }, buttons) : null,
      testBox, // the same charts, moved into the new drawing
      Object.keys(rollout.verdicts || {}).length
        ? h("table", { id: "verdicts" }, h("caption", { className: "muted" }, "Gate verdicts and their evidence"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Gate"), h("th", { scope: "col" }, "Verdict"), h("th", { scope: "col" }, "Evidence"))),
          h("tbody", {}, verdictRows(rollout.verdicts)))
        : h("p", { className: "muted" }, "No gate verdicts yet."),
      eventList(rollout.events || []));
    if (wasOpen) content.querySelector("#rollout-events").open = true; // a refresh keeps it open
  }

  return { section, refresh };
}
