// Line charts (uPlot) of series keyed by version and role; a key ending in "low" or "high"
// ("v2 challenger 95% low") is drawn dashed in its group's colour, as that series' interval.

import uPlot from "../vendor/uPlot.esm.js";
import { h, replace } from "./dom.js";

function groupOf(key) {
  return key.replace(/ (95% )?(low|high)$/, "");
}

const COLOURS = ["#0b57d0", "#8a4b00", "#146c2e", "#6b2fa3", "#b3261e", "#00639b", "#5f6b7a"];

// One chart: `keys` are series labels; `points` is [[t_s, {key: value}], ...].
export class LineChart {
  constructor(container, { title, unit, id, waiting = "Waiting for traffic…" }) {
    this.container = container;
    this.title = title;
    this.unit = unit;
    this.id = id;
    this.keys = [];
    this.plot = null;
    this.body = h("div", { className: "chart-body" }, h("p", { className: "muted" }, waiting));
    replace(container, h("figure", { className: "chart", id, "aria-label": title },
      h("h3", {}, title), this.body));
  }

  update(points) {
    const keys = [...new Set(points.flatMap(([, values]) => Object.keys(values)))].sort();
    if (points.length < 2 || !keys.length) return;
    const data = [points.map(([t]) => t), ...keys.map((key) => points.map(([, values]) => values[key] ?? null))];
    if (this.plot && keys.join("|") === this.keys.join("|")) {
      this.plot.setData(data);
      return;
    }
    if (this.plot) this.plot.destroy();
    this.keys = keys;
    replace(this.body);
    const width = Math.max(300, this.body.clientWidth || this.container.clientWidth - 24);
    this.plot = new uPlot({
      width,
      height: 220,
      series: [{}, ...keys.map((key) => this.style(key))],
      axes: [{}, { label: this.unit, size: 60 }],
      scales: { x: { time: true } },
    }, data, this.body);
  }

  // A series' look: one colour per group, its interval ("… low", "… high") dashed.
  style(key) {
    const group = groupOf(key);
    const groups = [...new Set(this.keys.map(groupOf))];
    const bound = key !== group;
    return {
      label: key,
      stroke: COLOURS[groups.indexOf(group) % COLOURS.length],
      width: bound ? 1 : 2,
      dash: bound ? [4, 4] : undefined,
      value: (_, v) => (v === null || v === undefined ? "—" : `${Math.abs(v) < 0.01 && v !== 0 ? v.toPrecision(2) : v.toFixed(2)} ${this.unit}`.trim()),
    };
  }

  destroy() {
    if (this.plot) this.plot.destroy();
  }
}
