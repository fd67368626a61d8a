// Line charts (uPlot) of series keyed by version and role.

import uPlot from "../vendor/uPlot.esm.js";
import { h, replace } from "./dom.js";

const COLOURS = ["#0b57d0", "#8a4b00", "#146c2e", "#6b2fa3", "#b3261e", "#00639b", "#5f6b7a"];

// One chart: `keys` are series labels; `points` is [[t_s, {key: value}], ...].
export class LineChart {
  constructor(container, { title, unit, id }) {
    this.container = container;
    this.title = title;
    this.unit = unit;
    this.id = id;
    this.keys = [];
    this.plot = null;
    this.body = h("div", { className: "chart-body" }, h("p", { className: "muted" }, "Waiting for traffic…"));
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
      series: [{}, ...keys.map((key, i) => ({ label: key, stroke: COLOURS[i % COLOURS.length], width: 2,
        value: (_, v) => (v === null || v === undefined ? "—" : `${v.toFixed(2)} ${this.unit}`) }))],
      axes: [{}, { label: this.unit, size: 60 }],
      scales: { x: { time: true } },
    }, data, this.body);
  }

  destroy() {
    if (this.plot) this.plot.destroy();
  }
}
