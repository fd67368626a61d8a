// Building the page: elements from data, never HTML strings (nothing a server value holds
// can become markup or script).

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "className") {
      el.className = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function fmtNumber(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  if (Math.abs(value) >= 1000) return Math.round(value).toLocaleString("en");
  return Number(value).toFixed(digits).replace(/\.0+$/, "");
}

export function fmtPercent(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return `${(value * 100).toFixed(digits)}%`;
}

export function fmtMs(value) {
  return value === null || value === undefined ? "—" : `${fmtNumber(value, value < 10 ? 2 : 1)} ms`;
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return date.toLocaleString("en-GB", { hour12: false });
}

export function badge(text, kind = "") {
  return h("span", { className: `badge ${kind}`.trim() }, text);
}

// Runs `tasks` (functions returning promises) at most `limit` at a time.
export async function inBatches(tasks, limit = 4) {
  const results = new Array(tasks.length);
  let next = 0;
  async function worker() {
    while (next < tasks.length) {
      const index = next++;
      try {
        results[index] = await tasks[index]();
      } catch (error) {
        results[index] = error;
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}

// A small line of the last values, for a table cell; `label` is what a screen reader hears.
export function sparkline(values, label) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  for (const [key, value] of Object.entries({ width: 64, height: 18, viewBox: "0 0 64 18", role: "img", class: "spark", "aria-label": label })) {
    svg.setAttribute(key, String(value));
  }
  const finite = values.filter(Number.isFinite);
  if (finite.length < 2) return svg;
  const high = Math.max(...finite), low = Math.min(...finite);
  const span = high - low || 1;
  const step = 62 / (values.length - 1);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", values.map((v, i) => Number.isFinite(v) ? `${(1 + i * step).toFixed(1)},${(17 - ((v - low) / span) * 16).toFixed(1)}` : "").filter(Boolean).join(" "));
  line.setAttribute("fill", "none");
  line.setAttribute("stroke", "currentColor");
  line.setAttribute("stroke-width", "1.5");
  svg.append(line);
  return svg;
}
